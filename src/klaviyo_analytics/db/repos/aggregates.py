"""Exact pre-aggregates per metric and bucket (hour, day, week in the store's time zone).

A refresh recomputes every bucket that a time range touches from the raw events, so the table
always equals what the events give, after any re-sync or late-arriving event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal, LiteralString

from klaviyo_analytics.db.repos.base import Conn

BucketSize = Literal["hour", "day", "week"]
BUCKET_SIZES: tuple[BucketSize, ...] = ("hour", "day", "week")


@dataclass(frozen=True, slots=True)
class Bucket:
    """One metric's figures over one bucket."""

    metric_id: str
    bucket_size: str
    bucket_start: datetime
    count: int
    sum_value: Decimal
    min_value: Decimal | None
    max_value: Decimal | None
    avg_value: Decimal | None
    unique_profiles: int


# Buckets are taken in the store's zone: date_trunc with a zone follows DST.
_LOWER: LiteralString = "date_trunc(%(unit)s, %(start)s::timestamptz, %(tz)s)"
# The first bucket start after the bucket holding %(end)s.
_AFTER_END: LiteralString = (
    "((date_trunc(%(unit)s, %(end)s::timestamptz, %(tz)s) AT TIME ZONE %(tz)s)"
    " + ('1 ' || %(unit)s)::interval) AT TIME ZONE %(tz)s"
)


class AggregateRepository:
    """Reads and refreshes `klaviyo_aggregated_metrics`."""

    async def rebuild(self, conn: Conn, *, timezone: str) -> int:
        """Recompute every bucket from all raw events; return the number of buckets written."""
        cur = await conn.execute(
            'SELECT min("timestamp") AS lo, max("timestamp") AS hi FROM klaviyo_events'
        )
        span = await cur.fetchone()
        await conn.execute("DELETE FROM klaviyo_aggregated_metrics")
        if span is None or span["lo"] is None:
            return 0
        return await self.refresh(conn, start=span["lo"], end=span["hi"], timezone=timezone)

    async def refresh(
        self,
        conn: Conn,
        *,
        start: datetime,
        end: datetime,
        timezone: str,
        sizes: Sequence[BucketSize] = BUCKET_SIZES,
        metric_ids: Sequence[str] | None = None,
    ) -> int:
        """Recompute every bucket overlapping [start, end]; return the number of buckets written.

        Buckets left without events are removed.
        """
        written = 0
        for unit in sizes:
            params = {
                "unit": unit,
                "tz": timezone,
                "start": start,
                "end": end,
                "metrics": list(metric_ids) if metric_ids is not None else None,
            }
            await conn.execute(
                "DELETE FROM klaviyo_aggregated_metrics WHERE bucket_size = %(unit)s"
                " AND bucket_start >= "
                + _LOWER
                + " AND bucket_start < "
                + _AFTER_END
                + " AND (%(metrics)s::text[] IS NULL OR metric_id = ANY(%(metrics)s))",
                params,
            )
            cur = await conn.execute(
                "INSERT INTO klaviyo_aggregated_metrics (metric_id, bucket_size, bucket_start, count,"
                " sum_value, min_value, max_value, avg_value, unique_profiles)"
                " SELECT metric_id, %(unit)s, date_trunc(%(unit)s, e.timestamp, %(tz)s), count(*),"
                " coalesce(sum(value), 0), min(value), max(value), avg(value),"
                " count(DISTINCT profile_id)"
                " FROM klaviyo_events e"
                " WHERE e.timestamp >= "
                + _LOWER
                + " AND e.timestamp < "
                + _AFTER_END
                + " AND (%(metrics)s::text[] IS NULL OR metric_id = ANY(%(metrics)s))"
                " GROUP BY 1, 3",
                params,
            )
            written += cur.rowcount
        return written

    async def series(
        self, conn: Conn, metric_id: str, bucket_size: BucketSize, start: datetime, end: datetime
    ) -> list[Bucket]:
        """Return a metric's stored buckets with start <= bucket_start < end, oldest first."""
        cur = await conn.execute(
            "SELECT metric_id, bucket_size, bucket_start, count, sum_value, min_value, max_value,"
            " avg_value, unique_profiles FROM klaviyo_aggregated_metrics WHERE metric_id = %s"
            " AND bucket_size = %s AND bucket_start >= %s AND bucket_start < %s ORDER BY bucket_start",
            (metric_id, bucket_size, start, end),
        )
        return [Bucket(**row) for row in await cur.fetchall()]

    async def totals(
        self,
        conn: Conn,
        metric_ids: Sequence[str],
        start: datetime,
        end: datetime,
        bucket_size: BucketSize = "day",
    ) -> dict[str, tuple[int, Decimal]]:
        """Return (count, sum of values) per metric over buckets starting in [start, end)."""
        cur = await conn.execute(
            "SELECT metric_id, sum(count) AS n, sum(sum_value) AS v FROM klaviyo_aggregated_metrics"
            " WHERE metric_id = ANY(%s) AND bucket_size = %s AND bucket_start >= %s"
            " AND bucket_start < %s GROUP BY metric_id",
            (list(metric_ids), bucket_size, start, end),
        )
        return {r["metric_id"]: (int(r["n"]), Decimal(r["v"])) for r in await cur.fetchall()}
