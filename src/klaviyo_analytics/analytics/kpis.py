"""The overview KPIs of a date range against a comparison range (preceding, or a year earlier).

Everything is read from the daily facts (additive figures are summed over dates; figures that
are not additive over days, such as unique customers, are counted from `fact_orders`), never
from raw events, so the answer stays fast on millions of events. Definitions: docs/analytics.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

from klaviyo_analytics.analytics.facts import CHANNELS, EMAIL_TOUCH_WINDOW, SMS_TOUCH_WINDOW
from klaviyo_analytics.analytics.metric_names import SUBSCRIBED
from klaviyo_analytics.analytics.periods import DateRange
from klaviyo_analytics.db.pool import Conn
from klaviyo_analytics.db.repos.events import EventRepository

__all__ = [
    "COMPARES",
    "Attributed",
    "Change",
    "Compare",
    "Deliverability",
    "Overview",
    "change",
    "comparison",
    "count_change",
    "overview",
    "ratio",
]  # fmt: skip

ZERO = Decimal(0)
CENT = Decimal("0.01")
RATE = Decimal("0.000001")


Compare = Literal["previous", "year"]
COMPARES: tuple[Compare, ...] = ("previous", "year")


@dataclass(frozen=True)
class Change:
    """A figure in the range, in the comparison range, and the change in percent.

    Money and rates are Decimals, counts ints. `change_pct` is None when the previous figure
    is 0 (no meaningful percentage).
    """

    current: Decimal | int
    previous: Decimal | int
    change_pct: float | None


@dataclass(frozen=True)
class Attributed:
    """Revenue attributed to messages: its change, share of all revenue (percent of the
    current range, None without revenue), and the current range's split by source (campaigns,
    flows), by medium (email, SMS) and by rule: Klaviyo's own attribution carried by the order
    event (`klaviyo`), else our last touch (`last_touch`: an email open or click within
    `email_window_hours`, or an SMS click within `sms_window_hours`, before the order)."""

    revenue: Change
    share_pct: float | None
    campaigns: Decimal
    flows: Decimal
    email: Decimal
    sms: Decimal
    klaviyo: Decimal
    last_touch: Decimal
    email_window_hours: int
    sms_window_hours: int


@dataclass(frozen=True)
class Deliverability:
    """Email list health of the range's messages (fractions), as Klaviyo computes them: bounces
    and spam complaints per email recipient, unsubscribes per recipient, unique clicks per
    unique open (click-to-open)."""

    bounce_rate: Change
    spam_rate: Change
    unsubscribe_rate: Change
    click_to_open_rate: Change


@dataclass(frozen=True)
class Overview:
    """The headline figures of a range; rates are fractions (0.25 is 25 %).

    `previous_range` is the comparison range: the preceding range of equal length
    (`compare="previous"`) or the same dates a year earlier (`compare="year"`).
    `comparison_before_data` is True when that range starts before the first synced order
    (`data_since`), so its changes do not compare like with like.
    """

    range: DateRange
    previous_range: DateRange
    compare: Compare
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
    data_since: date | None = None
    comparison_before_data: bool = False
    subscribers_source: str = "profiles"
    subscribers_metric: str | None = None
    attributed: Attributed | None = None
    deliverability: Deliverability | None = None


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


def count_change(current: Decimal | int, previous: Decimal | int) -> Change:
    """Return a `Change` of two counts, kept as ints (JSON integers)."""
    found = change(current, previous)
    return Change(int(current), int(previous), found.change_pct)


def comparison(rng: DateRange, compare: Compare = "previous") -> DateRange:
    """Return the range `rng` is compared with: the preceding range of equal length, or the
    same dates a year earlier."""
    return rng.year_earlier() if compare == "year" else rng.previous()


_REVENUE = (
    "SELECT channel,"
    " coalesce(sum(revenue) FILTER (WHERE date >= %(cs)s), 0) AS revenue,"
    " coalesce(sum(refunds) FILTER (WHERE date >= %(cs)s), 0) AS refunds,"
    " coalesce(sum(net_revenue) FILTER (WHERE date >= %(cs)s), 0) AS net_revenue,"
    " coalesce(sum(orders) FILTER (WHERE date >= %(cs)s), 0) AS orders,"
    " coalesce(sum(revenue) FILTER (WHERE date <= %(pe)s), 0) AS p_revenue,"
    " coalesce(sum(refunds) FILTER (WHERE date <= %(pe)s), 0) AS p_refunds,"
    " coalesce(sum(net_revenue) FILTER (WHERE date <= %(pe)s), 0) AS p_net_revenue,"
    " coalesce(sum(orders) FILTER (WHERE date <= %(pe)s), 0) AS p_orders,"
    " coalesce(sum(klaviyo_revenue) FILTER (WHERE date >= %(cs)s), 0) AS klaviyo,"
    " coalesce(sum(last_touch_revenue) FILTER (WHERE date >= %(cs)s), 0) AS last_touch"
    " FROM fact_revenue WHERE date >= %(ps)s AND date <= %(ce)s GROUP BY channel"
)
_ENGAGEMENT = (
    "SELECT channel, metric_type,"
    " coalesce(sum(unique_count) FILTER (WHERE date >= %(cs)s), 0) AS cur,"
    " coalesce(sum(unique_count) FILTER (WHERE date <= %(pe)s), 0) AS prev"
    " FROM fact_engagement WHERE date >= %(ps)s AND date <= %(ce)s"
    " AND metric_type IN ('recipients', 'delivered', 'opened', 'clicked', 'bounced',"
    "  'unsubscribed', 'spam_complaint')"
    " GROUP BY channel, metric_type"
)
# Distinct customers (and attributed buyers) of each range [a, b] without reading its orders:
# the per-day sums of `fact_order_days`, less the orders after b whose previous order is before
# a (a gap longer than the range: found by the gap index for long ranges, by the date index
# after b for short ones). Why this counts each customer once: migration 0022.
_SPANNING = (
    "(SELECT count(*) FROM fact_orders WHERE profile_id IS NOT NULL{buyer}"
    " AND {prev} IS NOT NULL AND {prev} < %({a})s AND date > %({b})s"
    " AND (date - {prev}) > (%({b})s::date - %({a})s::date + 1))"
)


def _distinct(column: str, a: str, b: str) -> str:
    """Return the SQL of one range's distinct count, over `fact_order_days` aliased `d`."""
    buyer = column.startswith("buyer_")
    spanning = _SPANNING.format(
        buyer=" AND channel <> 'unattributed'" if buyer else "",
        prev="prev_buyer_date" if buyer else "prev_order_date",
        a=a,
        b=b,
    )
    prefix = "buyer_" if buyer else ""
    return (
        f"coalesce(sum(d.{prefix}firsts) FILTER (WHERE d.date <= %({b})s), 0)"
        f" + coalesce(sum(d.{prefix}prevs - d.{prefix}orders) FILTER (WHERE d.date < %({a})s), 0)"
        f" - {spanning}"
    )


_CUSTOMERS = (
    "SELECT "
    + ", ".join(
        f"{_distinct(column, a, b)} AS {name}"
        for name, column, a, b in (
            ("customers", "orders", "cs", "ce"),
            ("p_customers", "orders", "ps", "pe"),
            ("buyers", "buyer_orders", "cs", "ce"),
            ("p_buyers", "buyer_orders", "ps", "pe"),
        )
    )
    + " FROM fact_order_days d WHERE d.date <= %(ce)s"
)
_FORMS = (
    "SELECT coalesce(sum(submissions) FILTER (WHERE date >= %(cs)s), 0) AS cur,"
    " coalesce(sum(submissions) FILTER (WHERE date <= %(pe)s), 0) AS prev"
    " FROM fact_forms WHERE date >= %(ps)s AND date <= %(ce)s"
)
_SUBSCRIBED = (
    "SELECT coalesce(sum(a.count) FILTER (WHERE a.bucket_start >= %(clo)s), 0) AS cur,"
    " coalesce(sum(a.count) FILTER (WHERE a.bucket_start < %(phi)s), 0) AS prev,"
    " count(DISTINCT m.id) AS metrics"
    " FROM klaviyo_metrics m LEFT JOIN klaviyo_aggregated_metrics a ON a.metric_id = m.id"
    "  AND a.bucket_size = 'day' AND a.bucket_start >= %(plo)s AND a.bucket_start < %(chi)s"
    " WHERE m.name = %(name)s"
)
_SUBSCRIBED_NAMES = "SELECT DISTINCT name FROM klaviyo_metrics WHERE name = ANY(%(names)s::text[])"
_DATA_SINCE = "SELECT min(date) AS first FROM fact_revenue"
# New profiles of each range: its whole UTC days from the per-day counts, and its partial
# UTC days at either end (under 24 hours each) from the profiles themselves, so the count is
# exact for a range of store days in any zone. `_created_bounds` gives the bounds.
_NEW_PROFILES = (
    "SELECT (SELECT coalesce(sum(profiles), 0) FROM fact_profiles_created"
    "  WHERE utc_date >= %(c_first)s AND utc_date < %(c_last)s)"
    " + (SELECT count(*) FROM klaviyo_profiles WHERE NOT is_stub"
    "  AND created >= %(clo)s AND created < %(c_head)s)"
    " + (SELECT count(*) FROM klaviyo_profiles WHERE NOT is_stub"
    "  AND created >= %(c_tail)s AND created < %(chi)s) AS cur,"
    " (SELECT coalesce(sum(profiles), 0) FROM fact_profiles_created"
    "  WHERE utc_date >= %(p_first)s AND utc_date < %(p_last)s)"
    " + (SELECT count(*) FROM klaviyo_profiles WHERE NOT is_stub"
    "  AND created >= %(plo)s AND created < %(p_head)s)"
    " + (SELECT count(*) FROM klaviyo_profiles WHERE NOT is_stub"
    "  AND created >= %(p_tail)s AND created < %(phi)s) AS prev"
)


async def _one(conn: Conn, query: Any, params: dict[str, Any]) -> dict[str, Any]:
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    return dict(row) if row is not None else {}


def range_params(rng: DateRange, tz: str, compare: Compare = "previous") -> dict[str, Any]:
    """Return the bound parameters of a range and its comparison range (dates and instants)."""
    prev = comparison(rng, compare)
    clo, chi = rng.bounds(tz)
    plo, phi = prev.bounds(tz)
    return {"cs": rng.start, "ce": rng.end, "ps": prev.start, "pe": prev.end,
            "clo": clo, "chi": chi, "plo": plo, "phi": phi}  # fmt: skip


async def overview(conn: Conn, rng: DateRange, tz: str, compare: Compare = "previous") -> Overview:
    """Return the overview KPIs of `rng` (store-local dates in zone `tz`) and their changes
    against the comparison range (`compare`: the preceding range, or a year earlier).

    Raises InvalidParameterError for an unknown zone.
    """
    params = range_params(rng, tz, compare)
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
    # One subscription metric (the first of Klaviyo's names the account has), so that a
    # signup recorded both as "Subscribed to List" and "... to Email Marketing" counts once.
    cur = await conn.execute(_SUBSCRIBED_NAMES, {"names": list(SUBSCRIBED)})
    present = {r["name"] for r in await cur.fetchall()}
    metric = next((n for n in SUBSCRIBED if n in present), None)
    if metric is not None:
        source = "subscribed_events"
        subscribed = await _one(conn, _SUBSCRIBED, {**params, "name": metric})
    else:
        source = "profiles"
        subscribed = await _one(conn, _NEW_PROFILES, {**params, **_created_bounds(params)})
    last = await EventRepository().latest_timestamp(conn)
    since = (await _one(conn, _DATA_SINCE, params)).get("first")
    previous = comparison(rng, compare)
    rules = {rule: total(rule) for rule in ("klaviyo", "last_touch")}

    revenue, p_revenue = total("revenue"), total("p_revenue")
    orders, p_orders = total("orders"), total("p_orders")

    def rate(metric: str, channels: tuple[str, ...], which: int) -> Decimal:
        return ratio(unique(metric, channels, which), unique("delivered", channels, which))

    return Overview(
        range=rng,
        previous_range=previous,
        compare=compare,
        revenue=change(revenue, p_revenue),
        net_revenue=change(total("net_revenue"), total("p_net_revenue")),
        refunds=change(total("refunds"), total("p_refunds")),
        orders=count_change(orders, p_orders),
        aov=change(ratio(revenue, orders, CENT), ratio(p_revenue, p_orders, CENT)),
        unique_customers=count_change(
            customers.get("customers", 0), customers.get("p_customers", 0)
        ),
        subscribers=count_change(subscribed.get("cur", 0), subscribed.get("prev", 0)),
        open_rate=change(rate("opened", email, 0), rate("opened", email, 1)),
        click_rate=change(rate("clicked", messages, 0), rate("clicked", messages, 1)),
        conversion_rate=change(
            ratio(customers.get("buyers", 0), unique("delivered", messages, 0)),
            ratio(customers.get("p_buyers", 0), unique("delivered", messages, 1)),
        ),
        form_submissions=count_change(forms.get("cur", 0), forms.get("prev", 0)),
        revenue_by_channel={
            c: Decimal(by_channel[c]["revenue"]) if c in by_channel else ZERO for c in CHANNELS
        },
        data_through=last,
        data_since=since,
        comparison_before_data=since is not None and previous.start < since,
        subscribers_source=source,
        subscribers_metric=metric,
        attributed=_attributed(by_channel, revenue, rules),
        deliverability=_deliverability(unique),
    )


def _deliverability(unique: Callable[[str, tuple[str, ...], int], int]) -> Deliverability:
    """Return the list health from the channel engagement sums (`unique(metric, channels,
    which)`, 0 the range, 1 the comparison): bounces and complaints per email recipient."""
    email, every = CHANNELS[:2], CHANNELS[:4]

    def rate(numerator: str, denominator: str, over: tuple[str, ...] = every,
             per: tuple[str, ...] = every) -> Change:  # fmt: skip
        return change(
            ratio(unique(numerator, over, 0), unique(denominator, per, 0)),
            ratio(unique(numerator, over, 1), unique(denominator, per, 1)),
        )

    return Deliverability(
        bounce_rate=rate("bounced", "recipients", per=email),
        spam_rate=rate("spam_complaint", "recipients", per=email),
        unsubscribe_rate=rate("unsubscribed", "recipients"),
        click_to_open_rate=rate("clicked", "opened", over=email),
    )


def _created_bounds(params: dict[str, Any]) -> dict[str, Any]:
    """Return, for the range [clo, chi) and the comparison [plo, phi), the UTC dates of their
    whole UTC days (`first` <= day < `last`) and the ends of their partial days: [lo, head)
    and [tail, hi). A range inside one UTC day is all partial (head = tail = hi)."""
    out: dict[str, Any] = {}
    for key in ("c", "p"):
        lo, hi = params[f"{key}lo"].astimezone(UTC), params[f"{key}hi"].astimezone(UTC)
        head = datetime.combine(lo.date(), time(), UTC)
        if head < lo:
            head += timedelta(days=1)
        tail = datetime.combine(hi.date(), time(), UTC)
        if head > tail:
            head = tail = hi
        out |= {f"{key}_first": head.date(), f"{key}_last": tail.date(),
                f"{key}_head": head, f"{key}_tail": tail}  # fmt: skip
    return out


def _attributed(
    by_channel: dict[str, Any], revenue: Decimal, rules: dict[str, Decimal]
) -> Attributed:
    def channel(name: str, column: str) -> Decimal:
        row = by_channel.get(name)
        return Decimal(row[column]) if row is not None else ZERO

    def summed(names: tuple[str, ...], column: str = "revenue") -> Decimal:
        return sum((channel(n, column) for n in names), ZERO)

    messages = CHANNELS[:4]
    current, previous = summed(messages), summed(messages, "p_revenue")
    share = None if revenue == 0 else round(float(current / revenue * 100), 2)
    return Attributed(
        revenue=change(current, previous),
        share_pct=share,
        campaigns=summed(("email_campaign", "sms_campaign")),
        flows=summed(("email_flow", "sms_flow")),
        email=summed(("email_campaign", "email_flow")),
        sms=summed(("sms_campaign", "sms_flow")),
        klaviyo=rules.get("klaviyo", ZERO),
        last_touch=rules.get("last_touch", ZERO),
        email_window_hours=int(EMAIL_TOUCH_WINDOW.total_seconds() // 3600),
        sms_window_hours=int(SMS_TOUCH_WINDOW.total_seconds() // 3600),
    )
