"""Signup forms and segments over a date range.

Forms: views and submissions are event counts per form from `fact_forms`; the submission rate
is submissions / views. Segments: the database holds each segment's size (`profile_count`, as
Klaviyo reports it now) but no membership, so a segment's revenue cannot be computed exactly;
`members_revenue` stays None rather than being guessed. Definitions: docs/analytics.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from psycopg import sql

from klaviyo_analytics.analytics.kpis import range_params
from klaviyo_analytics.analytics.periods import DateRange
from klaviyo_analytics.analytics.table import Table, fetch_page, search_pattern
from klaviyo_analytics.db.pool import Conn

FORM_SORTS = (
    "name",
    "status",
    "views",
    "submissions",
    "submission_rate",
    "previous_submissions",
    "submissions_change_pct",
)
SEGMENT_SORTS = ("name", "profile_count", "share_pct", "updated")


@dataclass(frozen=True)
class FormRow:
    """One signup form's views and submissions in the range (rate is a fraction)."""

    id: str
    name: str
    status: str | None
    views: int
    submissions: int
    submission_rate: Decimal
    previous_submissions: int
    submissions_change_pct: float | None


@dataclass(frozen=True)
class SegmentRow:
    """One segment: its size now and its share of all (non-stub) profiles."""

    id: str
    name: str
    profile_count: int | None
    share_pct: float | None
    updated: datetime | None
    members_revenue: Decimal | None = None


async def form_performance(
    conn: Conn,
    rng: DateRange,
    tz: str,
    *,
    sort: str = "submissions",
    descending: bool = True,
    limit: int = 50,
    offset: int = 0,
    search: str | None = None,
) -> Table[FormRow]:
    """Return a page of every form with its views and submissions in the range.

    Raises InvalidParameterError for a sort column outside FORM_SORTS, or a bad page.
    """
    params = {**range_params(rng, tz), "pattern": search_pattern(search)}
    rows_sql = sql.SQL(
        "x AS (SELECT form_id,"
        " sum(views) FILTER (WHERE date >= %(cs)s) AS views,"
        " sum(submissions) FILTER (WHERE date >= %(cs)s) AS submissions,"
        " sum(submissions) FILTER (WHERE date < %(cs)s) AS previous"
        " FROM fact_forms WHERE date >= %(ps)s AND date <= %(ce)s GROUP BY 1),"
        " r AS (SELECT f.id, f.name, f.status, coalesce(x.views, 0)::bigint AS views,"
        " coalesce(x.submissions, 0)::bigint AS submissions,"
        " round(coalesce(x.submissions::numeric / nullif(x.views, 0), 0), 6) AS submission_rate,"
        " coalesce(x.previous, 0)::bigint AS previous_submissions,"
        " round((coalesce(x.submissions, 0) - x.previous)::numeric / nullif(x.previous, 0) * 100,"
        " 2)::float8 AS submissions_change_pct"
        " FROM klaviyo_forms f LEFT JOIN x ON x.form_id = f.id"
        " WHERE %(pattern)s::text IS NULL OR f.name ILIKE %(pattern)s)"
    )
    rows, total = await fetch_page(conn, rows_sql, params, sort=sort, allowed=FORM_SORTS,
                                   descending=descending, limit=limit, offset=offset)  # fmt: skip
    return Table([FormRow(**r) for r in rows], total)


async def segment_performance(
    conn: Conn,
    rng: DateRange,
    tz: str,
    *,
    sort: str = "profile_count",
    descending: bool = True,
    limit: int = 50,
    offset: int = 0,
    search: str | None = None,
) -> Table[SegmentRow]:
    """Return a page of segments with their size; the range does not change a segment's size.

    Raises InvalidParameterError for a sort column outside SEGMENT_SORTS, or a bad page.
    """
    params = {"pattern": search_pattern(search)}
    rows_sql = sql.SQL(
        "t AS (SELECT count(*) AS n FROM klaviyo_profiles WHERE NOT is_stub),"
        " r AS (SELECT s.id, s.name, s.profile_count,"
        " round(s.profile_count::numeric / nullif(t.n, 0) * 100, 2)::float8 AS share_pct,"
        " s.updated FROM klaviyo_segments s CROSS JOIN t"
        " WHERE %(pattern)s::text IS NULL OR s.name ILIKE %(pattern)s)"
    )
    rows, total = await fetch_page(conn, rows_sql, params, sort=sort, allowed=SEGMENT_SORTS,
                                   descending=descending, limit=limit, offset=offset)  # fmt: skip
    return Table([SegmentRow(**r) for r in rows], total)


async def top_forms(conn: Conn, rng: DateRange, tz: str, limit: int = 5) -> list[FormRow]:
    """Return the forms with the most submissions in the range."""
    return (await form_performance(conn, rng, tz, limit=limit)).rows


async def top_segments(conn: Conn, rng: DateRange, tz: str, limit: int = 5) -> list[SegmentRow]:
    """Return the largest segments."""
    return (await segment_performance(conn, rng, tz, limit=limit)).rows
