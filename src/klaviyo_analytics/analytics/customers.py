"""Customer analytics over `fact_orders`: monthly cohorts and RFM scores, groups and movement.

Every figure is exact: counts and sums of the synced Placed Order events (one `fact_orders` row
each, on the store's local date), which the sync keeps equal to the raw events. Refunds are not
netted (a refunded order still counts, as in Klaviyo's Placed Order figures). Definitions and
the RFM scoring rule: docs/analytics.md.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, LiteralString

from klaviyo_analytics.analytics.periods import DateRange
from klaviyo_analytics.db.pool import Conn

__all__ = [
    "GROUPS",
    "Cohort",
    "CohortPeriod",
    "RfmGroup",
    "RfmMove",
    "RfmProfile",
    "RfmSummary",
    "cohorts",
    "months_between",
    "rfm",
    "rfm_group",
    "rfm_profiles",
]

CENT = Decimal("0.01")
ZERO = Decimal(0)
# The named groups, in the order their rules are tried (the first that matches wins).
GROUPS: tuple[str, ...] = (
    "Champions",
    "Loyal",
    "Recent",
    "At risk",
    "Inactive",
    "Needs attention",
)
MOVEMENT_DAYS = 30


def rfm_group(r: int, f: int, m: int) -> str:
    """Return the named group of 1-5 scores (the rule docs/analytics.md states)."""
    if r >= 4 and f >= 4 and m >= 4:
        return "Champions"
    if r >= 3 and f >= 3:
        return "Loyal"
    if r >= 4:
        return "Recent"
    if r <= 2 and f >= 3:
        return "At risk"
    if r == 1:
        return "Inactive"
    return "Needs attention"


_GROUP_SQL: LiteralString = (
    "CASE WHEN r_score >= 4 AND f_score >= 4 AND m_score >= 4 THEN 'Champions'"
    " WHEN r_score >= 3 AND f_score >= 3 THEN 'Loyal'"
    " WHEN r_score >= 4 THEN 'Recent'"
    " WHEN r_score <= 2 AND f_score >= 3 THEN 'At risk'"
    " WHEN r_score = 1 THEN 'Inactive'"
    " ELSE 'Needs attention' END"
)


def months_between(first: date, later: date) -> int:
    """Return the calendar months from `first`'s month to `later`'s month."""
    return (later.year - first.year) * 12 + later.month - first.month


@dataclass(frozen=True)
class CohortPeriod:
    """Month `index` after a cohort's month: who ordered, how often, for how much."""

    index: int
    active_customers: int
    orders: int
    revenue: Decimal
    attributed_revenue: Decimal
    cumulative_revenue_per_customer: Decimal


@dataclass(frozen=True)
class Cohort:
    """The customers whose first ever order was in month `cohort` (YYYY-MM)."""

    cohort: str
    customers: int
    periods: list[CohortPeriod]


# One row per (cohort, calendar month) from the per-customer-month fact: a customer's row of its
# cohort month counts it in the cohort's size, every row counts it active in that month.
_COHORTS: LiteralString = (
    "SELECT date_trunc('month', first_order_date)::date AS cohort, month AS period,"
    "  count(*) AS active, sum(orders) AS orders, sum(revenue) AS revenue,"
    "  sum(attributed_revenue) AS attributed"
    " FROM fact_customer_months"
    " WHERE first_order_date >= %(start)s AND first_order_date <= %(end)s"
    " GROUP BY 1, 2 ORDER BY 1, 2"
)


async def cohorts(conn: Conn, rng: DateRange, today: date) -> list[Cohort]:
    """Return the monthly cohorts of customers whose first ever order is in `rng`.

    Each cohort has one period per calendar month from its own month through `today`'s
    (months without orders are zeros), so the heat map is a complete triangle.
    """
    cur = await conn.execute(_COHORTS, {"start": rng.start, "end": rng.end})
    sizes: dict[date, int] = {}
    cells: dict[tuple[date, int], dict[str, Any]] = {}
    last_month = today.replace(day=1)
    for row in await cur.fetchall():
        if row["period"] == row["cohort"]:
            sizes[row["cohort"]] = int(row["active"])
        cells[(row["cohort"], months_between(row["cohort"], row["period"]))] = row
        last_month = max(last_month, row["period"])
    out = []
    for month in sorted(sizes):
        customers = sizes[month]
        cumulative = ZERO
        periods = []
        for k in range(months_between(month, last_month) + 1):
            cell = cells.get((month, k))
            revenue = Decimal(cell["revenue"]) if cell else ZERO
            cumulative += revenue
            periods.append(
                CohortPeriod(
                    index=k,
                    active_customers=int(cell["active"]) if cell else 0,
                    orders=int(cell["orders"]) if cell else 0,
                    revenue=revenue,
                    attributed_revenue=Decimal(cell["attributed"]) if cell else ZERO,
                    cumulative_revenue_per_customer=(cumulative / customers).quantize(
                        CENT, ROUND_HALF_EVEN
                    ),
                )
            )
        out.append(Cohort(cohort=month.strftime("%Y-%m"), customers=customers, periods=periods))
    return out


def _scored(name: LiteralString, as_of: LiteralString) -> LiteralString:
    """Return CTEs ending in `name`: every customer's R, F, M, scores and group on `as_of`.

    A customer's state on a day is one row of `fact_orders`: its last order dated on or before
    the day (the one whose next order, in (date, timestamp, id) order, is later or absent),
    which carries its order count and revenue to date. Scores are 1 + floor(5 * percent_rank),
    capped at 5, with percent_rank = (values ranked before) / (customers - 1), so equal
    values get equal scores; computed exactly in integers without a window over customers:
    recency and frequency from a histogram of their few distinct values (values ranked
    before = a running sum of counts), monetary from the four values a score changes after
    (score >= k + 1 exactly when at least ceil(k * (n - 1) / 5) values are below it, that is
    when it exceeds the ceil(k * (n - 1) / 5)-th smallest).
    """
    state: LiteralString = (
        " SELECT profile_id, " + as_of + "::date - date AS recency_days,"
        "  orders_to_date AS frequency, revenue_to_date AS monetary, date AS last_order"
        " FROM fact_orders WHERE profile_id IS NOT NULL AND date <= " + as_of
    )
    # The k-th cut is the ceil(k * (n - 1) / 5)-th smallest monetary value (1-based).
    cuts: LiteralString = (
        "a[((n + 3) / 5)::int] AS m1, a[((2 * n + 2) / 5)::int] AS m2,"
        " a[((3 * n + 1) / 5)::int] AS m3, a[((4 * n) / 5)::int] AS m4"
    )
    return (
        name + "_raw AS MATERIALIZED ("
        + state + " AND next_order_date IS NULL"
        " UNION ALL" + state + " AND next_order_date > " + as_of
        + "), " + name + "_r AS ("
        " SELECT recency_days, (sum(c) OVER (ORDER BY recency_days DESC) - c)::bigint AS before,"
        "  (sum(c) OVER ())::bigint AS n"
        " FROM (SELECT recency_days, count(*) AS c FROM " + name + "_raw GROUP BY 1) h"
        "), " + name + "_f AS ("
        " SELECT frequency, (sum(c) OVER (ORDER BY frequency) - c)::bigint AS before"
        " FROM (SELECT frequency, count(*) AS c FROM " + name + "_raw GROUP BY 1) h"
        "), " + name + "_m AS MATERIALIZED ("
        " SELECT " + cuts + " FROM (SELECT count(*) AS n,"
        "  array_agg(monetary ORDER BY monetary) AS a FROM " + name + "_raw) x"
        "), " + name + "_s AS ("
        " SELECT x.*,"
        "  CASE WHEN r.n < 2 THEN 1 ELSE least(5, 1 + 5 * r.before / (r.n - 1)) END::int"
        "   AS r_score,"
        "  CASE WHEN r.n < 2 THEN 1 ELSE least(5, 1 + 5 * f.before / (r.n - 1)) END::int"
        "   AS f_score,"
        "  CASE WHEN r.n < 2 THEN 1 ELSE 1 + (x.monetary > m.m1)::int + (x.monetary > m.m2)::int"
        "   + (x.monetary > m.m3)::int + (x.monetary > m.m4)::int END AS m_score"
        " FROM " + name + "_raw x JOIN " + name + "_r r USING (recency_days)"
        " JOIN " + name + "_f f USING (frequency) CROSS JOIN " + name + "_m m"
        "), " + name + " AS (SELECT *, " + _GROUP_SQL + " AS segment FROM " + name + "_s)"
    )  # fmt: skip


_NOW: LiteralString = _scored("cur", "%(as_of)s")
_THEN: LiteralString = _scored("prev", "%(earlier)s")


@dataclass(frozen=True)
class RfmGroup:
    """One named group: its customers, their orders and revenue up to `as_of`."""

    group: str
    customers: int
    orders: int
    revenue: Decimal


@dataclass(frozen=True)
class RfmMove:
    """Customers who were in `from_group` 30 days earlier (None: no order yet) and are now in
    `to_group`."""

    from_group: str | None
    to_group: str
    customers: int


@dataclass(frozen=True)
class RfmSummary:
    """The RFM picture on `as_of` and the movement since `compared_to`."""

    as_of: date
    compared_to: date
    customers: int
    groups: list[RfmGroup]
    moved: int
    new_customers: int
    movement: list[RfmMove]


async def rfm(conn: Conn, as_of: date) -> RfmSummary:
    """Return the groups of every customer with an order on or before `as_of`, and how many
    changed group since `as_of` - 30 days."""
    earlier = as_of - timedelta(days=MOVEMENT_DAYS)
    # One pass: each customer's group now and 30 days earlier (None: no order by then).
    cur = await conn.execute(
        "WITH " + _NOW + ", " + _THEN
        + " SELECT c.segment AS to_group, p.segment AS from_group, count(*) AS customers,"
        " sum(c.frequency) AS orders, sum(c.monetary) AS revenue"
        " FROM cur c LEFT JOIN prev p ON p.profile_id = c.profile_id GROUP BY 1, 2",
        {"as_of": as_of, "earlier": earlier},
    )  # fmt: skip
    customers: dict[str, int] = defaultdict(int)
    orders: dict[str, int] = defaultdict(int)
    revenue: dict[str, Decimal] = defaultdict(lambda: ZERO)
    moves = []
    for row in await cur.fetchall():
        to_group, n = row["to_group"], int(row["customers"])
        customers[to_group] += n
        orders[to_group] += int(row["orders"])
        revenue[to_group] += Decimal(row["revenue"])
        if row["from_group"] != to_group:
            moves.append(RfmMove(row["from_group"], to_group, n))
    groups = [
        RfmGroup(group=name, customers=customers[name], orders=orders[name],
                 revenue=revenue[name])
        for name in GROUPS
    ]  # fmt: skip
    moves.sort(key=lambda m: (-m.customers, m.from_group or "", m.to_group))
    return RfmSummary(
        as_of=as_of,
        compared_to=earlier,
        customers=sum(g.customers for g in groups),
        groups=groups,
        moved=sum(m.customers for m in moves if m.from_group is not None),
        new_customers=sum(m.customers for m in moves if m.from_group is None),
        movement=moves,
    )


@dataclass(frozen=True)
class RfmProfile:
    """One customer's raw R, F, M, scores and group."""

    profile_id: str
    recency_days: int
    frequency: int
    monetary: Decimal
    last_order: date
    r_score: int
    f_score: int
    m_score: int
    group: str


async def rfm_profiles(
    conn: Conn, as_of: date, *, group: str | None, limit: int, offset: int
) -> tuple[int, list[RfmProfile]]:
    """Return (total, page) of customers on `as_of`, optionally of one group, by monetary
    value (highest first, then profile id)."""
    params = {"as_of": as_of, "group": group, "limit": limit, "offset": offset}
    cur = await conn.execute(
        "WITH " + _NOW + ", chosen AS (SELECT * FROM cur"
        " WHERE %(group)s::text IS NULL OR segment = %(group)s::text),"
        " page AS (SELECT * FROM chosen ORDER BY monetary DESC, profile_id"
        "  LIMIT %(limit)s OFFSET %(offset)s)"
        " SELECT (SELECT count(*) FROM chosen) AS total, g.*"
        " FROM (SELECT 1) one LEFT JOIN page g ON true ORDER BY g.monetary DESC, g.profile_id",
        params,
    )  # fmt: skip
    rows = await cur.fetchall()
    total = int(rows[0]["total"]) if rows else 0
    page = [
        RfmProfile(
            profile_id=r["profile_id"],
            recency_days=int(r["recency_days"]),
            frequency=int(r["frequency"]),
            monetary=Decimal(r["monetary"]),
            last_order=r["last_order"],
            r_score=int(r["r_score"]),
            f_score=int(r["f_score"]),
            m_score=int(r["m_score"]),
            group=r["segment"],
        )
        for r in rows
        if r["profile_id"] is not None
    ]
    return total, page
