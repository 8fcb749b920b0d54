"""Email and SMS campaigns with their messages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from klaviyo_analytics.db.repos.base import Conn, Repository


@dataclass(frozen=True, slots=True)
class Campaign:
    """A campaign sent on one channel (email, sms or mobile_push)."""

    id: str
    name: str
    channel: str
    status: str | None = None
    archived: bool = False
    audiences: dict[str, Any] | None = None
    send_strategy: dict[str, Any] | None = None
    created_at: datetime | None = None
    scheduled_at: datetime | None = None
    send_time: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CampaignMessage:
    """One message of a campaign."""

    id: str
    campaign_id: str
    channel: str | None = None
    label: str | None = None
    subject: str | None = None
    preview_text: str | None = None
    from_email: str | None = None
    from_label: str | None = None
    content: dict[str, Any] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class CampaignRepository(Repository[Campaign]):
    """Campaigns."""

    def __init__(self) -> None:
        super().__init__("klaviyo_campaigns", Campaign, ("id",))

    async def find_by_channel(
        self, conn: Conn, channel: str, *, limit: int = 1000
    ) -> list[Campaign]:
        """Return the campaigns of one channel, most recently sent first."""
        cur = await conn.execute(
            "SELECT id, name, channel, status, archived, audiences, send_strategy, created_at,"
            " scheduled_at, send_time, updated_at FROM klaviyo_campaigns WHERE channel = %s"
            " ORDER BY send_time DESC NULLS LAST, id LIMIT %s",
            (channel, limit),
        )
        return [Campaign(**row) for row in await cur.fetchall()]


class CampaignMessageRepository(Repository[CampaignMessage]):
    """Campaign messages."""

    def __init__(self) -> None:
        super().__init__("klaviyo_campaign_messages", CampaignMessage, ("id",))

    async def campaign_of_message(self, conn: Conn) -> dict[str, str]:
        """Return every stored message id with its campaign's id."""
        cur = await conn.execute("SELECT id, campaign_id FROM klaviyo_campaign_messages")
        return {row["id"]: row["campaign_id"] for row in await cur.fetchall()}
