"""Performance tables of campaigns and flows over a date range, against the previous range.

The open rate is unique opens per delivered *email* (None when no email was delivered: SMS
has no opens), so it sorts last either way. Figures come from `fact_message_engagement` and `fact_conversions` summed over the range's
dates (both additive: unique figures count on the day a pair first happens). Forms, segments
and chart series live in `audiences` and `charts` and are re-exported here, so that callers
need one import. Definitions: docs/analytics.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, LiteralString

from psycopg import sql

from klaviyo_analytics.analytics.audiences import (
    FormRow,
    SegmentRow,
    form_performance,
    segment_performance,
    top_forms,
    top_segments,
)
from klaviyo_analytics.analytics.charts import (
    ChannelShare,
    EngagementPoint,
    RevenuePoint,
    channel_distribution,
    engagement_by_day,
    revenue_by_day,
    revenue_series,
)
from klaviyo_analytics.analytics.errors import InvalidParameterError
from klaviyo_analytics.analytics.kpis import range_params
from klaviyo_analytics.analytics.periods import DateRange
from klaviyo_analytics.analytics.table import Table, fetch_page, search_pattern
from klaviyo_analytics.db.pool import Conn
from klaviyo_analytics.errors import NotFoundError

__all__ = [
    "CAMPAIGN_SORTS",
    "FLOW_SORTS",
    "CampaignRow",
    "ChannelShare",
    "EngagementPoint",
    "FlowMessageRow",
    "FlowRow",
    "FormRow",
    "InvalidParameterError",
    "RevenuePoint",
    "SegmentRow",
    "Table",
    "campaign_performance",
    "channel_distribution",
    "engagement_by_day",
    "flow_message_performance",
    "flow_performance",
    "form_performance",
    "revenue_by_day",
    "revenue_series",
    "segment_performance",
    "top_flows",
    "top_forms",
    "top_segments",
]

# The figures every campaign, flow and flow-message row carries.
_METRIC_SORTS = (
    "recipients",
    "delivered",
    "unique_opens",
    "unique_clicks",
    "open_rate",
    "click_rate",
    "conversions",
    "revenue",
    "revenue_per_recipient",
    "unsubscribes",
    "previous_revenue",
    "revenue_change_pct",
    "bounces",
    "spam_complaints",
    "bounce_rate",
    "spam_rate",
    "unsubscribe_rate",
    "click_to_open_rate",
)
CAMPAIGN_SORTS = ("name", "channel", "send_time", *_METRIC_SORTS)
FLOW_SORTS = ("name", "status", *_METRIC_SORTS)
FLOW_MESSAGE_SORTS = ("position", "name", "channel", *_METRIC_SORTS)


@dataclass(frozen=True)
class CampaignRow:
    """One campaign's figures in the range (rates are fractions; money is exact)."""

    id: str
    name: str
    channel: str
    send_time: datetime | None
    recipients: int
    delivered: int
    unique_opens: int
    unique_clicks: int
    open_rate: Decimal | None
    click_rate: Decimal
    conversions: int
    revenue: Decimal
    revenue_per_recipient: Decimal
    unsubscribes: int
    previous_revenue: Decimal
    revenue_change_pct: float | None
    bounces: int
    spam_complaints: int
    bounce_rate: Decimal | None
    spam_rate: Decimal | None
    unsubscribe_rate: Decimal | None
    click_to_open_rate: Decimal | None


@dataclass(frozen=True)
class FlowRow:
    """One flow's figures in the range, all its messages together."""

    id: str
    name: str
    status: str | None
    recipients: int
    delivered: int
    unique_opens: int
    unique_clicks: int
    open_rate: Decimal | None
    click_rate: Decimal
    conversions: int
    revenue: Decimal
    revenue_per_recipient: Decimal
    unsubscribes: int
    previous_revenue: Decimal
    revenue_change_pct: float | None
    bounces: int
    spam_complaints: int
    bounce_rate: Decimal | None
    spam_rate: Decimal | None
    unsubscribe_rate: Decimal | None
    click_to_open_rate: Decimal | None


@dataclass(frozen=True)
class FlowMessageRow:
    """One flow message's figures in the range."""

    id: str
    flow_id: str
    position: int
    name: str | None
    channel: str | None
    recipients: int
    delivered: int
    unique_opens: int
    unique_clicks: int
    open_rate: Decimal | None
    click_rate: Decimal
    conversions: int
    revenue: Decimal
    revenue_per_recipient: Decimal
    unsubscribes: int
    previous_revenue: Decimal
    revenue_change_pct: float | None
    bounces: int
    spam_complaints: int
    bounce_rate: Decimal | None
    spam_rate: Decimal | None
    unsubscribe_rate: Decimal | None
    click_to_open_rate: Decimal | None


# Per source (campaign, flow or flow message): sums over the range and the previous range.
_FIGURES: LiteralString = (
    "coalesce(e.recipients, 0)::bigint AS recipients, coalesce(e.delivered, 0)::bigint AS delivered,"
    " coalesce(e.unique_opens, 0)::bigint AS unique_opens, coalesce(e.unique_clicks, 0)::bigint AS unique_clicks,"
    " round(e.unique_opens::numeric / nullif(e.email_delivered, 0), 6) AS open_rate,"
    " round(coalesce(e.unique_clicks::numeric / nullif(e.delivered, 0), 0), 6) AS click_rate,"
    " coalesce(v.conversions, 0)::bigint AS conversions, coalesce(v.revenue, 0) AS revenue,"
    " round(coalesce(v.revenue / nullif(e.recipients, 0), 0), 2) AS revenue_per_recipient,"
    " coalesce(e.unsubscribes, 0)::bigint AS unsubscribes, coalesce(p.revenue, 0) AS previous_revenue,"
    " round((coalesce(v.revenue, 0) - p.revenue) / nullif(p.revenue, 0) * 100, 2)::float8"
    "  AS revenue_change_pct,"
    # Deliverability as Klaviyo computes it: per recipient, except click-to-open (per open).
    " coalesce(e.bounces, 0)::bigint AS bounces,"
    " coalesce(e.spam_complaints, 0)::bigint AS spam_complaints,"
    " round(e.bounces::numeric / nullif(e.email_recipients, 0), 6) AS bounce_rate,"
    " round(e.spam_complaints::numeric / nullif(e.email_recipients, 0), 6) AS spam_rate,"
    " round(e.unsubscribes::numeric / nullif(e.recipients, 0), 6) AS unsubscribe_rate,"
    " round(e.email_clicks::numeric / nullif(e.unique_opens, 0), 6) AS click_to_open_rate"
)


def _sums(key: LiteralString) -> sql.Composed:
    """Return the CTEs e (engagement), v (conversions), p (previous revenue) keyed by `key`."""
    return sql.SQL(
        "e AS (SELECT {k} AS key, sum(recipients) AS recipients, sum(delivered) AS delivered,"
        " sum(delivered) FILTER (WHERE channel LIKE 'email%%') AS email_delivered,"
        " sum(recipients) FILTER (WHERE channel LIKE 'email%%') AS email_recipients,"
        " sum(unique_clicks) FILTER (WHERE channel LIKE 'email%%') AS email_clicks,"
        " sum(bounces) AS bounces, sum(spam_complaints) AS spam_complaints,"
        " sum(unique_opens) AS unique_opens, sum(unique_clicks) AS unique_clicks,"
        " sum(unsubscribes) AS unsubscribes FROM fact_message_engagement"
        " WHERE source_type = %(source_type)s AND date >= %(cs)s AND date <= %(ce)s"
        " AND (%(source_id)s::text IS NULL OR source_id = %(source_id)s) GROUP BY 1),"
        " v AS (SELECT {k} AS key, sum(conversions) AS conversions, sum(revenue) AS revenue"
        " FROM fact_conversions WHERE source_type = %(source_type)s"
        " AND date >= %(cs)s AND date <= %(ce)s"
        " AND (%(source_id)s::text IS NULL OR source_id = %(source_id)s) GROUP BY 1),"
        " p AS (SELECT {k} AS key, sum(revenue) AS revenue FROM fact_conversions"
        " WHERE source_type = %(source_type)s AND date >= %(ps)s AND date <= %(pe)s"
        " AND (%(source_id)s::text IS NULL OR source_id = %(source_id)s) GROUP BY 1)"
    ).format(k=sql.SQL(key))


def _figures(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in _METRIC_SORTS}


async def campaign_performance(
    conn: Conn,
    rng: DateRange,
    tz: str,
    *,
    sort: str = "revenue",
    descending: bool = True,
    limit: int = 50,
    offset: int = 0,
    search: str | None = None,
    campaign_id: str | None = None,
) -> Table[CampaignRow]:
    """Return a page of campaigns with activity in the range or sent in it, and the total
    (only campaign `campaign_id`, when given).

    Raises InvalidParameterError for a sort column outside CAMPAIGN_SORTS, or a bad page.
    """
    params = {**range_params(rng, tz), "source_type": "campaign", "source_id": campaign_id,
              "pattern": search_pattern(search)}  # fmt: skip
    rows_sql = sql.SQL(
        "{sums}, r AS (SELECT c.id, c.name, c.channel, c.send_time, {figures}"
        " FROM klaviyo_campaigns c LEFT JOIN e ON e.key = c.id LEFT JOIN v ON v.key = c.id"
        " LEFT JOIN p ON p.key = c.id"
        " WHERE (e.key IS NOT NULL OR v.key IS NOT NULL"
        "  OR (c.send_time >= %(clo)s AND c.send_time < %(chi)s))"
        " AND (%(source_id)s::text IS NULL OR c.id = %(source_id)s)"
        " AND (%(pattern)s::text IS NULL OR c.name ILIKE %(pattern)s))"
    ).format(sums=_sums("source_id"), figures=sql.SQL(_FIGURES))
    rows, total = await fetch_page(conn, rows_sql, params, sort=sort, allowed=CAMPAIGN_SORTS,
                                   descending=descending, limit=limit, offset=offset)  # fmt: skip
    return Table(
        [
            CampaignRow(
                id=r["id"],
                name=r["name"],
                channel=r["channel"],
                send_time=r["send_time"],
                **_figures(r),
            )
            for r in rows
        ],
        total,
    )


async def flow_performance(
    conn: Conn,
    rng: DateRange,
    tz: str,
    *,
    sort: str = "revenue",
    descending: bool = True,
    limit: int = 50,
    offset: int = 0,
    search: str | None = None,
) -> Table[FlowRow]:
    """Return a page of every flow (zeros where it had no activity) and the total.

    Raises InvalidParameterError for a sort column outside FLOW_SORTS, or a bad page.
    """
    params = {**range_params(rng, tz), "source_type": "flow", "source_id": None,
              "pattern": search_pattern(search)}  # fmt: skip
    rows_sql = sql.SQL(
        "{sums}, r AS (SELECT f.id, f.name, f.status, {figures}"
        " FROM klaviyo_flows f LEFT JOIN e ON e.key = f.id LEFT JOIN v ON v.key = f.id"
        " LEFT JOIN p ON p.key = f.id"
        " WHERE (%(pattern)s::text IS NULL OR f.name ILIKE %(pattern)s))"
    ).format(sums=_sums("source_id"), figures=sql.SQL(_FIGURES))
    rows, total = await fetch_page(conn, rows_sql, params, sort=sort, allowed=FLOW_SORTS,
                                   descending=descending, limit=limit, offset=offset)  # fmt: skip
    return Table(
        [FlowRow(id=r["id"], name=r["name"], status=r["status"], **_figures(r)) for r in rows],
        total,
    )


async def flow_message_performance(
    conn: Conn,
    rng: DateRange,
    tz: str,
    flow_id: str,
    *,
    sort: str = "revenue",
    descending: bool = True,
    limit: int = 100,
    offset: int = 0,
) -> Table[FlowMessageRow]:
    """Return the figures of each message of one flow in the range.

    Raises NotFoundError for an unknown flow, InvalidParameterError for a bad sort or page.
    """
    cur = await conn.execute("SELECT 1 FROM klaviyo_flows WHERE id = %s", (flow_id,))
    if await cur.fetchone() is None:
        raise NotFoundError(f"flow {flow_id!r} not found")
    params = {**range_params(rng, tz), "source_type": "flow", "source_id": flow_id}
    rows_sql = sql.SQL(
        # position: the message's place in the flow, by its action's creation (flow order).
        "{sums}, r AS (SELECT m.id, m.flow_id,"
        " row_number() OVER (ORDER BY a.created NULLS LAST, m.flow_action_id, m.id) AS position,"
        " m.name, m.channel, {figures}"
        " FROM klaviyo_flow_messages m LEFT JOIN klaviyo_flow_actions a ON a.id = m.flow_action_id"
        " LEFT JOIN e ON e.key = m.id LEFT JOIN v ON v.key = m.id"
        " LEFT JOIN p ON p.key = m.id WHERE m.flow_id = %(source_id)s)"
    ).format(sums=_sums("message_id"), figures=sql.SQL(_FIGURES))
    rows, total = await fetch_page(conn, rows_sql, params, sort=sort, allowed=FLOW_MESSAGE_SORTS,
                                   descending=descending, limit=limit, offset=offset)  # fmt: skip
    return Table(
        [
            FlowMessageRow(
                id=r["id"],
                flow_id=r["flow_id"],
                position=int(r["position"]),
                name=r["name"],
                channel=r["channel"],
                **_figures(r),
            )
            for r in rows
        ],
        total,
    )


async def top_flows(conn: Conn, rng: DateRange, tz: str, limit: int = 5) -> list[FlowRow]:
    """Return the flows with the most attributed revenue in the range.

    Raises InvalidParameterError for a limit outside 1..1000.
    """
    return (await flow_performance(conn, rng, tz, sort="revenue", limit=limit)).rows
