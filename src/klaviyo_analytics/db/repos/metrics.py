"""Klaviyo metrics (the event types of an account)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from klaviyo_analytics.db.repos.base import Conn, Repository


@dataclass(frozen=True, slots=True)
class Metric:
    """A Klaviyo metric such as "Placed Order"."""

    id: str
    name: str
    integration_id: str | None = None
    integration_name: str | None = None
    integration_category: str | None = None
    created: datetime | None = None
    updated: datetime | None = None


class MetricRepository(Repository[Metric]):
    """Metrics, found by name (and integration), never by hard-coded id."""

    def __init__(self) -> None:
        super().__init__("klaviyo_metrics", Metric, ("id",))

    async def find_by_name(
        self, conn: Conn, name: str, integration_name: str | None = None
    ) -> list[Metric]:
        """Return the metrics with this name (optionally from one integration), oldest first."""
        cur = await conn.execute(
            "SELECT id, name, integration_id, integration_name, integration_category, created, updated"
            " FROM klaviyo_metrics WHERE name = %(name)s"
            " AND (%(integration)s::text IS NULL OR integration_name = %(integration)s)"
            " ORDER BY created NULLS LAST, id",
            {"name": name, "integration": integration_name},
        )
        return [Metric(**row) for row in await cur.fetchall()]

    async def ids_by_name(self, conn: Conn) -> dict[str, list[str]]:
        """Return every metric name with the ids that carry it."""
        cur = await conn.execute(
            "SELECT name, array_agg(id ORDER BY id) AS ids FROM klaviyo_metrics GROUP BY name"
        )
        return {row["name"]: list(row["ids"]) for row in await cur.fetchall()}
