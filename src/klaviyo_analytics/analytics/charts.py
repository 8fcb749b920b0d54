"""Chart series over a date range, read from the daily facts: dense (every date and channel)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from klaviyo_analytics.analytics.facts import CHANNELS, MESSAGE_CHANNELS
from klaviyo_analytics.analytics.kpis import ratio
from klaviyo_analytics.analytics.periods import DateRange
from klaviyo_analytics.db.pool import Conn


@dataclass(frozen=True)
class RevenuePoint:
    """Revenue and orders of one channel on one local date."""

    date: date
    channel: str
    revenue: Decimal
    orders: int


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
