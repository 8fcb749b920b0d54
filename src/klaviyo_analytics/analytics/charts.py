"""Chart series over a date range, read from the daily facts: dense (every date and channel)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import LiteralString

from klaviyo_analytics.analytics.facts import CHANNELS, MESSAGE_CHANNELS
from klaviyo_analytics.analytics.kpis import ratio
from klaviyo_analytics.analytics.periods import Bucket, DateRange, zone
from klaviyo_analytics.db.pool import Conn


@dataclass(frozen=True)
class RevenuePoint:
    """Revenue and orders of one channel in one bucket: a local date (the first date of a week
    or month bucket that is in the range), or with `hour` one local hour of that date."""

    date: date
    channel: str
    revenue: Decimal
    orders: int
    hour: int | None = None


@dataclass(frozen=True)
class ChannelShare:
    """One channel's revenue and orders in the range, and its share of the revenue in percent."""

    channel: str
    revenue: Decimal
    orders: int
    share_pct: float | None


@dataclass(frozen=True)
class EngagementPoint:
    """One message channel's rates on one local date (fractions; 0 without deliveries)."""

    date: date
    channel: str
    open_rate: Decimal
    click_rate: Decimal
    delivered: int


async def revenue_by_day(conn: Conn, rng: DateRange, tz: str) -> list[RevenuePoint]:
    """Return revenue and orders for every date of the range and every channel (zeros too)."""
    cur = await conn.execute(
        "SELECT date, channel, revenue, orders FROM fact_revenue WHERE date >= %s AND date <= %s",
        (rng.start, rng.end),
    )
    found = {(r["date"], r["channel"]): r for r in await cur.fetchall()}
    points = []
    for day in rng.dates():
        for channel in CHANNELS:
            r = found.get((day, channel))
            points.append(
                RevenuePoint(
                    day,
                    channel,
                    Decimal(r["revenue"]) if r else Decimal(0),
                    int(r["orders"]) if r else 0,
                )
            )
    return points


_HOURLY: LiteralString = (
    "SELECT date_trunc('hour', \"timestamp\" AT TIME ZONE %(tz)s) AS local, channel,"
    " sum(value) AS revenue, count(*) AS orders FROM fact_orders"
    ' WHERE "timestamp" >= %(lo)s AND "timestamp" < %(hi)s GROUP BY 1, 2'
)
_GROUPED: LiteralString = (
    "SELECT greatest(date_trunc(%(unit)s, date)::date, %(start)s::date) AS date, channel,"
    " sum(revenue) AS revenue, sum(orders) AS orders FROM fact_revenue"
    " WHERE date >= %(start)s AND date <= %(end)s GROUP BY 1, 2"
)


async def revenue_series(conn: Conn, rng: DateRange, tz: str) -> tuple[Bucket, list[RevenuePoint]]:
    """Return the range's bucket (`DateRange.bucket`) and revenue and orders per bucket and
    channel, every bucket and channel present (zeros too). Weeks start on Monday; a week or
    month cut by the range's start is labelled with that start.

    Raises InvalidParameterError for an unknown zone.
    """
    bucket = rng.bucket()
    if bucket == "day":
        return bucket, await revenue_by_day(conn, rng, tz)
    points = []
    if bucket == "hour":
        zone(tz)
        lo, hi = rng.bounds(tz)
        cur = await conn.execute(_HOURLY, {"tz": tz, "lo": lo, "hi": hi})
        found = {
            (r["local"].date(), r["local"].hour, r["channel"]): r for r in await cur.fetchall()
        }
        for day in rng.dates():
            for hour in range(24):
                for channel in CHANNELS:
                    r = found.get((day, hour, channel))
                    revenue = Decimal(r["revenue"]) if r else Decimal(0)
                    points.append(
                        RevenuePoint(day, channel, revenue, int(r["orders"]) if r else 0, hour)
                    )
        return bucket, points
    cur = await conn.execute(_GROUPED, {"unit": bucket, "start": rng.start, "end": rng.end})
    grouped = {(r["date"], r["channel"]): r for r in await cur.fetchall()}
    starts = sorted({max(_bucket_start(d, bucket), rng.start) for d in rng.dates()})
    for start in starts:
        for channel in CHANNELS:
            r = grouped.get((start, channel))
            points.append(
                RevenuePoint(
                    start,
                    channel,
                    Decimal(r["revenue"]) if r else Decimal(0),
                    int(r["orders"]) if r else 0,
                )
            )
    return bucket, points


def _bucket_start(day: date, bucket: Bucket) -> date:
    if bucket == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


async def channel_distribution(conn: Conn, rng: DateRange, tz: str) -> list[ChannelShare]:
    """Return each channel's revenue, orders and share of the range's revenue (every channel)."""
    cur = await conn.execute(
        "SELECT channel, sum(revenue) AS revenue, sum(orders) AS orders FROM fact_revenue"
        " WHERE date >= %s AND date <= %s GROUP BY channel",
        (rng.start, rng.end),
    )
    found = {r["channel"]: r for r in await cur.fetchall()}
    total = sum((Decimal(r["revenue"]) for r in found.values()), Decimal(0))
    shares = []
    for channel in CHANNELS:
        r = found.get(channel)
        revenue = Decimal(r["revenue"]) if r else Decimal(0)
        share = None if total == 0 else round(float(revenue / total * 100), 2)
        shares.append(ChannelShare(channel, revenue, int(r["orders"]) if r else 0, share))
    return shares


async def engagement_by_day(conn: Conn, rng: DateRange, tz: str) -> list[EngagementPoint]:
    """Return open and click rates per date and message channel (unique / delivered)."""
    cur = await conn.execute(
        "SELECT date, channel, sum(delivered) AS delivered, sum(unique_opens) AS opens,"
        " sum(unique_clicks) AS clicks FROM fact_message_engagement"
        " WHERE date >= %s AND date <= %s GROUP BY date, channel",
        (rng.start, rng.end),
    )
    found = {(r["date"], r["channel"]): r for r in await cur.fetchall()}
    points = []
    for day in rng.dates():
        for channel in MESSAGE_CHANNELS:
            r = found.get((day, channel))
            delivered = int(r["delivered"]) if r else 0
            points.append(
                EngagementPoint(
                    day,
                    channel,
                    ratio(r["opens"], delivered) if r else ratio(0, 0),
                    ratio(r["clicks"], delivered) if r else ratio(0, 0),
                    delivered,
                )
            )
    return points
