"""Klaviyo profiles, with stub rows for profiles that events name before they are synced."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, LiteralString

from psycopg import sql

from klaviyo_analytics.db.repos.base import Conn, Repository


@dataclass(frozen=True, slots=True)
class Profile:
    """A person known to the account, with Klaviyo's predictive analytics (None: none given)."""

    id: str
    email: str | None = None
    phone_number: str | None = None
    external_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    organization: str | None = None
    locale: str | None = None
    location: dict[str, Any] | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    created: datetime | None = None
    updated: datetime | None = None
    is_stub: bool = False
    historic_clv: Decimal | None = None
    predicted_clv: Decimal | None = None
    total_clv: Decimal | None = None
    historic_number_of_orders: Decimal | None = None
    predicted_number_of_orders: Decimal | None = None
    average_days_between_orders: Decimal | None = None
    average_order_value: Decimal | None = None
    churn_probability: Decimal | None = None
    expected_date_of_next_order: datetime | None = None


class ProfileRepository(Repository[Profile]):
    """Profiles: finders by email, phone and external id; text search; stubs."""

    def __init__(self) -> None:
        super().__init__("klaviyo_profiles", Profile, ("id",))

    async def find_by_email(self, conn: Conn, email: str) -> list[Profile]:
        """Return the profiles with this email address, compared case-insensitively."""
        return await self._where(conn, "lower(email) = lower(%s)", email)

    async def find_by_phone(self, conn: Conn, phone_number: str) -> list[Profile]:
        """Return the profiles with this phone number."""
        return await self._where(conn, "phone_number = %s", phone_number)

    async def find_by_external_id(self, conn: Conn, external_id: str) -> list[Profile]:
        """Return the profiles with this external id."""
        return await self._where(conn, "external_id = %s", external_id)

    async def search(self, conn: Conn, text: str, *, limit: int = 20) -> list[Profile]:
        """Return profiles whose email or name contains `text` (case-insensitive)."""
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        return await self._where(
            conn,
            "(coalesce(email, '') || ' ' || coalesce(first_name, '') || ' ' || coalesce(last_name, ''))"
            " ILIKE %s",
            pattern,
            limit=limit,
        )

    async def ensure_stubs(self, conn: Conn, ids: Iterable[str]) -> int:
        """Create stub rows for profile ids not yet stored; return how many were created."""
        cur = await conn.execute(
            "INSERT INTO klaviyo_profiles (id, is_stub) SELECT DISTINCT unnest(%s::text[]), true"
            " ON CONFLICT (id) DO NOTHING",
            (list(ids),),
        )
        return cur.rowcount

    async def _where(
        self, conn: Conn, condition: LiteralString, value: Any, *, limit: int = 100
    ) -> list[Profile]:
        cur = await conn.execute(
            sql.SQL("SELECT {cols} FROM klaviyo_profiles WHERE {cond} ORDER BY id LIMIT %s").format(
                cols=self._cols(), cond=sql.SQL(condition)
            ),
            (value, limit),
        )
        return [Profile(**row) for row in await cur.fetchall()]
