"""The overview KPIs of a date range against the previous range of equal length.

Everything is read from the daily facts (additive figures are summed over dates; figures that
are not additive over days, such as unique customers, are counted from `fact_orders`), never
from raw events, so the answer stays fast on millions of events. Definitions: docs/analytics.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from klaviyo_analytics.analytics.facts import CHANNELS
from klaviyo_analytics.analytics.metric_names import SUBSCRIBED
from klaviyo_analytics.analytics.periods import DateRange
from klaviyo_analytics.db.pool import Conn

__all__ = ["Change", "Overview", "change", "overview", "ratio"]

ZERO = Decimal(0)
CENT = Decimal("0.01")
RATE = Decimal("0.000001")


@dataclass(frozen=True)
class Change:
    """A figure in the range, in the previous range, and the change in percent.

    `change_pct` is None when the previous figure is 0 (no meaningful percentage).
    """

    current: Decimal
    previous: Decimal
    change_pct: float | None


@dataclass(frozen=True)
class Overview:
    """The headline figures of a range; rates are fractions (0.25 is 25 %)."""

    range: DateRange
    previous_range: DateRange
    revenue: Change
    net_revenue: Change
    refunds: Change
    orders: Change
    aov: Change
    unique_customers: Change
    subscribers: Change
    open_rate: Change
    click_rate: Change
    conversion_rate: Change
    form_submissions: Change
    revenue_by_channel: dict[str, Decimal]
    data_through: datetime | None
    subscribers_source: str = "profiles"


def ratio(numerator: Decimal | int, denominator: Decimal | int, quantum: Decimal = RATE) -> Decimal:
    """Return numerator / denominator rounded to `quantum` (half even), or 0 when dividing by 0."""
    if not denominator:
        return ZERO.quantize(quantum)
    return (Decimal(numerator) / Decimal(denominator)).quantize(quantum, ROUND_HALF_EVEN)


def change(current: Decimal | int, previous: Decimal | int) -> Change:
    """Return a `Change` of two figures; the percentage is rounded to 2 decimals."""
    cur, prev = Decimal(current), Decimal(previous)
    pct = None if prev == 0 else round(float((cur - prev) / abs(prev) * 100), 2)
    return Change(cur, prev, pct)


_REVENUE = (
    "SELECT channel,"
    " coalesce(sum(revenue) FILTER (WHERE date >= %(cs)s), 0) AS revenue,"
    " coalesce(sum(refunds) FILTER (WHERE date >= %(cs)s), 0) AS refunds,"
    " coalesce(sum(net_revenue) FILTER (WHERE date >= %(cs)s), 0) AS net_revenue,"
    " coalesce(sum(orders) FILTER (WHERE date >= %(cs)s), 0) AS orders,"
    " coalesce(sum(revenue) FILTER (WHERE date < %(cs)s), 0) AS p_revenue,"
    " coalesce(sum(refunds) FILTER (WHERE date < %(cs)s), 0) AS p_refunds,"
    " coalesce(sum(net_revenue) FILTER (WHERE date < %(cs)s), 0) AS p_net_revenue,"
    " coalesce(sum(orders) FILTER (WHERE date < %(cs)s), 0) AS p_orders"
    " FROM fact_revenue WHERE date >= %(ps)s AND date <= %(ce)s GROUP BY channel"
)
_ENGAGEMENT = (
    "SELECT channel, metric_type,"
    " coalesce(sum(unique_count) FILTER (WHERE date >= %(cs)s), 0) AS cur,"
    " coalesce(sum(unique_count) FILTER (WHERE date < %(cs)s), 0) AS prev"
    " FROM fact_engagement WHERE date >= %(ps)s AND date <= %(ce)s"
    " AND metric_type IN ('delivered', 'opened', 'clicked') GROUP BY channel, metric_type"
)
# Distinct customers (and attributed buyers) of each range, counted as rows: a profile's
# first order in a range is the one whose previous order (attributed order, for buyers) falls
# before the range's start. One scan of the two ranges' orders, no per-profile grouping.
_CUSTOMERS = (
    "SELECT count(*) FILTER (WHERE date >= %(cs)s"
    "  AND (prev_order_date IS NULL OR prev_order_date < %(cs)s)) AS customers,"
    " count(*) FILTER (WHERE date < %(cs)s"
    "  AND (prev_order_date IS NULL OR prev_order_date < %(ps)s)) AS p_customers,"
    " count(*) FILTER (WHERE date >= %(cs)s AND channel <> 'unattributed'"
    "  AND (prev_buyer_date IS NULL OR prev_buyer_date < %(cs)s)) AS buyers,"
    " count(*) FILTER (WHERE date < %(cs)s AND channel <> 'unattributed'"
    "  AND (prev_buyer_date IS NULL OR prev_buyer_date < %(ps)s)) AS p_buyers"
    " FROM fact_orders WHERE date >= %(ps)s AND date <= %(ce)s AND profile_id IS NOT NULL"
)
_FORMS = (
    "SELECT coalesce(sum(submissions) FILTER (WHERE date >= %(cs)s), 0) AS cur,"
    " coalesce(sum(submissions) FILTER (WHERE date < %(cs)s), 0) AS prev"
    " FROM fact_forms WHERE date >= %(ps)s AND date <= %(ce)s"
)
_SUBSCRIBED = (
    "SELECT coalesce(sum(a.count) FILTER (WHERE a.bucket_start >= %(clo)s), 0) AS cur,"
    " coalesce(sum(a.count) FILTER (WHERE a.bucket_start < %(clo)s), 0) AS prev,"
    " count(DISTINCT m.id) AS metrics"
    " FROM klaviyo_metrics m LEFT JOIN klaviyo_aggregated_metrics a ON a.metric_id = m.id"
    "  AND a.bucket_size = 'day' AND a.bucket_start >= %(plo)s AND a.bucket_start < %(chi)s"
    " WHERE m.name = ANY(%(names)s::text[])"
)
_NEW_PROFILES = (
    "SELECT count(*) FILTER (WHERE created >= %(clo)s) AS cur,"
    " count(*) FILTER (WHERE created < %(clo)s) AS prev"
    " FROM klaviyo_profiles WHERE NOT is_stub AND created >= %(plo)s AND created < %(chi)s"
)
_DATA_THROUGH = 'SELECT max("timestamp") AS last FROM klaviyo_events'


async def _one(conn: Conn, query: Any, params: dict[str, Any]) -> dict[str, Any]:
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    return dict(row) if row is not None else {}


def range_params(rng: DateRange, tz: str) -> dict[str, Any]:
    """Return the bound parameters of a range and its previous range (dates and instants)."""
    prev = rng.previous()
    clo, chi = rng.bounds(tz)
    plo, _ = prev.bounds(tz)
    return {"cs": rng.start, "ce": rng.end, "ps": prev.start, "pe": prev.end,
            "clo": clo, "chi": chi, "plo": plo}  # fmt: skip


async def overview(conn: Conn, rng: DateRange, tz: str) -> Overview:
    """Return the overview KPIs of `rng` (store-local dates in zone `tz`) and their changes.

    Raises InvalidParameterError for an unknown zone.
    """
    params = range_params(rng, tz)
    cur = await conn.execute(_REVENUE, params)
    by_channel = {r["channel"]: r for r in await cur.fetchall()}

    def total(column: str) -> Decimal:
        return sum((Decimal(r[column]) for r in by_channel.values()), ZERO)

    cur = await conn.execute(_ENGAGEMENT, params)
    engagement: dict[tuple[str, str], tuple[int, int]] = {
        (r["channel"], r["metric_type"]): (int(r["cur"]), int(r["prev"]))
        for r in await cur.fetchall()
    }

    def unique(metric: str, channels: tuple[str, ...], which: int) -> int:
        return sum(engagement.get((c, metric), (0, 0))[which] for c in channels)

    email = ("email_campaign", "email_flow")
    messages = CHANNELS[:4]
    customers = await _one(conn, _CUSTOMERS, params)
    forms = await _one(conn, _FORMS, params)
    subscribed = await _one(conn, _SUBSCRIBED, {**params, "names": list(SUBSCRIBED)})
    source = "subscribed_events"
    if not subscribed.get("metrics"):
        source = "profiles"
        subscribed = await _one(conn, _NEW_PROFILES, params)
    last = await _one(conn, _DATA_THROUGH, params)

    revenue, p_revenue = total("revenue"), total("p_revenue")
    orders, p_orders = total("orders"), total("p_orders")

    def rate(metric: str, channels: tuple[str, ...], which: int) -> Decimal:
        return ratio(unique(metric, channels, which), unique("delivered", channels, which))

    return Overview(
        range=rng,
        previous_range=rng.previous(),
        revenue=change(revenue, p_revenue),
        net_revenue=change(total("net_revenue"), total("p_net_revenue")),
        refunds=change(total("refunds"), total("p_refunds")),
        orders=change(orders, p_orders),
        aov=change(ratio(revenue, orders, CENT), ratio(p_revenue, p_orders, CENT)),
        unique_customers=change(customers.get("customers", 0), customers.get("p_customers", 0)),
        subscribers=change(subscribed.get("cur", 0), subscribed.get("prev", 0)),
        open_rate=change(rate("opened", email, 0), rate("opened", email, 1)),
        click_rate=change(rate("clicked", messages, 0), rate("clicked", messages, 1)),
        conversion_rate=change(
            ratio(customers.get("buyers", 0), unique("delivered", messages, 0)),
            ratio(customers.get("p_buyers", 0), unique("delivered", messages, 1)),
        ),
        form_submissions=change(forms.get("cur", 0), forms.get("prev", 0)),
        revenue_by_channel={
            c: Decimal(by_channel[c]["revenue"]) if c in by_channel else ZERO for c in CHANNELS
        },
        data_through=last.get("last"),
        subscribers_source=source,
    )
