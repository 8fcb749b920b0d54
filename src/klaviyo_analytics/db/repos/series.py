"""Gap-filled bucket series read from the exact pre-aggregates (`klaviyo_aggregated_metrics`).

The bucket grid is generated in SQL with the very `date_trunc(unit, ts, zone)` the aggregates
refresh uses, so the grid and the stored buckets agree by construction, DST days included
(an hourly grid has 23 or 25 buckets on a change day; a daily one has one bucket per local day).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from klaviyo_analytics.db.repos.base import Conn

BucketUnit = Literal["hour", "day", "week"]

# A step shorter than the shortest bucket of each unit, so that sampling the range at this step
# and truncating reaches every bucket: local hours last at least 30 minutes (Lord Howe's DST
# shift), days at least 23 hours.
_GRID_STEP = {"hour": "15 minutes", "day": "1 hour", "week": "1 hour"}


@dataclass(frozen=True, slots=True)
class FilledBucket:
    """One bucket of the grid with its figures (zeros where no event fell)."""

    bucket_start: datetime
    count: int
    sum_value: Decimal
    unique_profiles: int


class SeriesRepository:
    """Reads a metric's buckets over a range with every bucket present."""

    async def filled(
        self,
        conn: Conn,
        metric_id: str,
        unit: BucketUnit,
        *,
        start: datetime,
        end: datetime,
        timezone: str,
    ) -> list[FilledBucket]:
        """Return every bucket overlapping [start, end), oldest first, missing ones as zeros."""
        cur = await conn.execute(
            "WITH grid AS ("
            " SELECT DISTINCT date_trunc(%(unit)s, g, %(tz)s) AS bucket_start"
            " FROM generate_series(date_trunc(%(unit)s, %(start)s::timestamptz, %(tz)s),"
            " %(end)s::timestamptz - interval '1 microsecond', %(step)s::interval) AS g)"
            " SELECT grid.bucket_start, coalesce(a.count, 0) AS count,"
            " coalesce(a.sum_value, 0) AS sum_value,"
            " coalesce(a.unique_profiles, 0) AS unique_profiles"
            " FROM grid LEFT JOIN klaviyo_aggregated_metrics a ON a.metric_id = %(metric)s"
            " AND a.bucket_size = %(unit)s AND a.bucket_start = grid.bucket_start"
            " ORDER BY grid.bucket_start",
            {
                "unit": unit,
                "tz": timezone,
                "start": start,
                "end": end,
                "step": _GRID_STEP[unit],
                "metric": metric_id,
            },
        )
        return [FilledBucket(**row) for row in await cur.fetchall()]
