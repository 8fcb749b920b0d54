"""One campaign in detail: its figures since it was sent and its first 72 hours, hour by hour.

The figures are the campaign's row of the performance table over the store-local dates from its
send to today; the hours come from its attributed events (the partial index on
`attributed_source_id`) and from `fact_orders`, counted from the send time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import LiteralString

from klaviyo_analytics.analytics.metric_names import (
    CLICKED_EMAIL,
    CLICKED_SMS,
    OPENED_EMAIL,
    RECEIVED_EMAIL,
    RECEIVED_SMS,
)
from klaviyo_analytics.analytics.performance import CampaignRow, campaign_performance
from klaviyo_analytics.analytics.periods import DateRange, zone
from klaviyo_analytics.db.pool import Conn
from klaviyo_analytics.errors import NotFoundError

__all__ = ["DETAIL_HOURS", "CampaignDetail", "CampaignHour", "campaign_detail"]

DETAIL_HOURS = 72

_KINDS = {
    RECEIVED_EMAIL: "received",
    RECEIVED_SMS: "received",
    OPENED_EMAIL: "opens",
    CLICKED_EMAIL: "clicks",
    CLICKED_SMS: "clicks",
}


@dataclass(frozen=True)
class CampaignHour:
    """One hour after the send (`hour` 0 is the first): messages received, opens and clicks
    (events, not unique), orders attributed to the campaign and their revenue."""

    hour: int
    received: int
    opens: int
    clicks: int
    orders: int
    revenue: Decimal


@dataclass(frozen=True)
class CampaignDetail:
    """A campaign's figures from its send date to today, and its first hours after the send."""

    campaign: CampaignRow
    range: DateRange
    send_time: datetime | None
    hours: list[CampaignHour]


_SEND: LiteralString = "SELECT send_time FROM klaviyo_campaigns WHERE id = %s"
_EVENTS: LiteralString = (
    'SELECT floor(extract(epoch FROM e."timestamp" - %(send)s) / 3600)::int AS hour, m.name,'
    " count(*) AS n FROM klaviyo_events e JOIN klaviyo_metrics m ON m.id = e.metric_id"
    " WHERE e.attributed_source_type = 'campaign' AND e.attributed_source_id = %(id)s"
    ' AND e."timestamp" >= %(send)s AND e."timestamp" < %(until)s'
    " AND m.name = ANY(%(names)s::text[]) GROUP BY 1, 2"
)
_ORDERS: LiteralString = (
    'SELECT floor(extract(epoch FROM "timestamp" - %(send)s) / 3600)::int AS hour,'
    " count(*) AS orders, sum(value) AS revenue FROM fact_orders"
    " WHERE source_type = 'campaign' AND source_id = %(id)s"
    ' AND "timestamp" >= %(send)s AND "timestamp" < %(until)s GROUP BY 1'
)


async def campaign_detail(conn: Conn, campaign_id: str, tz: str, today: date) -> CampaignDetail:
    """Return campaign `campaign_id`'s figures since its send (store zone `tz`) and its first
    72 hours. Raises NotFoundError for an unknown campaign."""
    cur = await conn.execute(_SEND, (campaign_id,))
    found = await cur.fetchone()
    if found is None:
        raise NotFoundError(f"campaign {campaign_id!r} not found")
    send: datetime | None = found["send_time"]
    start = send.astimezone(zone(tz)).date() if send is not None else today
    rng = DateRange(min(start, today), today)
    table = await campaign_performance(conn, rng, tz, campaign_id=campaign_id, limit=1)
    if not table.rows:
        raise NotFoundError(f"campaign {campaign_id!r} has no figures")
    hours: list[CampaignHour] = []
    if send is not None:
        params = {"id": campaign_id, "send": send, "until": send + timedelta(hours=DETAIL_HOURS),
                  "names": list(_KINDS)}  # fmt: skip
        cur = await conn.execute(_EVENTS, params)
        counts: dict[tuple[int, str], int] = {}
        for r in await cur.fetchall():
            key = (int(r["hour"]), _KINDS[r["name"]])
            counts[key] = counts.get(key, 0) + int(r["n"])
        cur = await conn.execute(_ORDERS, params)
        orders = {int(r["hour"]): r for r in await cur.fetchall()}
        for h in range(DETAIL_HOURS):
            o = orders.get(h)
            hours.append(
                CampaignHour(
                    hour=h,
                    received=counts.get((h, "received"), 0),
                    opens=counts.get((h, "opens"), 0),
                    clicks=counts.get((h, "clicks"), 0),
                    orders=int(o["orders"]) if o else 0,
                    revenue=Decimal(o["revenue"]) if o else Decimal(0),
                )
            )
    return CampaignDetail(table.rows[0], rng, send, hours)
