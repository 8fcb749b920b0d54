"""Customer analytics over `fact_orders`: monthly cohorts and RFM scores, groups and movement.

Every figure is exact: counts and sums of the synced Placed Order events (one `fact_orders` row
each, on the store's local date), which the sync keeps equal to the raw events. Refunds are not
netted (a refunded order still counts, as in Klaviyo's Placed Order figures). Definitions and
the RFM scoring rule: docs/analytics.md.
"""

from __future__ import annotations

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


_COHORTS: LiteralString = (
    "WITH cohort AS ("
    " SELECT profile_id, date_trunc('month', min(date))::date AS month"
    " FROM fact_orders WHERE profile_id IS NOT NULL GROUP BY profile_id"
    " HAVING min(date) >= %(start)s AND min(date) <= %(end)s)"
    " SELECT c.month, date_trunc('month', o.date)::date AS period,"
    "  count(DISTINCT o.profile_id) AS active, count(*) AS orders,"
    "  coalesce(sum(o.value), 0) AS revenue,"
    "  coalesce(sum(o.value) FILTER (WHERE o.channel <> 'unattributed'), 0) AS attributed"
    " FROM cohort c JOIN fact_orders o ON o.profile_id = c.profile_id"
    " GROUP BY 1, 2 ORDER BY 1, 2"
)
_COHORT_SIZES: LiteralString = (
    "SELECT month, count(*) AS customers FROM ("
    " SELECT date_trunc('month', min(date))::date AS month"
    " FROM fact_orders WHERE profile_id IS NOT NULL GROUP BY profile_id"
    " HAVING min(date) >= %(start)s AND min(date) <= %(end)s) c GROUP BY 1"
)


async def cohorts(conn: Conn, rng: DateRange, today: date) -> list[Cohort]:
    """Return the monthly cohorts of customers whose first ever order is in `rng`.

    Each cohort has one period per calendar month from its own month through `today`'s
    (months without orders are zeros), so the heat map is a complete triangle.
    """
    params = {"start": rng.start, "end": rng.end}
    cur = await conn.execute(_COHORT_SIZES, params)
    sizes = {row["month"]: int(row["customers"]) for row in await cur.fetchall()}
    cur = await conn.execute(_COHORTS, params)
    cells: dict[tuple[date, int], dict[str, Any]] = {}
    last_month = today.replace(day=1)
    for row in await cur.fetchall():
        cells[(row["month"], months_between(row["month"], row["period"]))] = row
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


# Scores: 1 + floor(5 * percent_rank), capped at 5; equal values get equal scores. Recency is
# ranked descending (the most recent buyers score 5), frequency and monetary ascending.
_SCORED: LiteralString = (
    "WITH raw AS ("
    " SELECT profile_id, %(as_of)s::date - max(date) AS recency_days, count(*) AS frequency,"
    "  coalesce(sum(value), 0) AS monetary, max(date) AS last_order"
    " FROM fact_orders WHERE profile_id IS NOT NULL AND date <= %(as_of)s GROUP BY profile_id"
    "), scored AS ("
    " SELECT *,"
    "  least(5, 1 + floor(5 * percent_rank() OVER (ORDER BY recency_days DESC)))::int AS r_score,"
    "  least(5, 1 + floor(5 * percent_rank() OVER (ORDER BY frequency)))::int AS f_score,"
    "  least(5, 1 + floor(5 * percent_rank() OVER (ORDER BY monetary)))::int AS m_score"
    " FROM raw"
    "), grouped AS (SELECT *, " + _GROUP_SQL + " AS segment FROM scored)"
)


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
    cur = await conn.execute(
        _SCORED + " SELECT segment, count(*) AS customers, sum(frequency) AS orders,"
        " sum(monetary) AS revenue FROM grouped GROUP BY segment",
        {"as_of": as_of},
    )
    found = {row["segment"]: row for row in await cur.fetchall()}
    groups = [
        RfmGroup(
            group=name,
            customers=int(found[name]["customers"]) if name in found else 0,
            orders=int(found[name]["orders"]) if name in found else 0,
            revenue=Decimal(found[name]["revenue"]) if name in found else ZERO,
        )
        for name in GROUPS
    ]
    earlier = as_of - timedelta(days=MOVEMENT_DAYS)
    cur = await conn.execute(
        "WITH now_g AS (" + _SCORED + " SELECT profile_id, segment FROM grouped),"
        " then_g AS (" + _SCORED.replace("%(as_of)s", "%(earlier)s")
        + " SELECT profile_id, segment FROM grouped)"
        " SELECT t.segment AS from_group, n.segment AS to_group, count(*) AS customers"
        " FROM now_g n LEFT JOIN then_g t ON t.profile_id = n.profile_id"
        " WHERE t.segment IS DISTINCT FROM n.segment GROUP BY 1, 2",
        {"as_of": as_of, "earlier": earlier},
    )  # fmt: skip
    moves = [
        RfmMove(row["from_group"], row["to_group"], int(row["customers"]))
        for row in await cur.fetchall()
    ]
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
    where: LiteralString = " WHERE (%(group)s::text IS NULL OR segment = %(group)s::text)"
    cur = await conn.execute(_SCORED + " SELECT count(*) AS n FROM grouped" + where, params)
    row = await cur.fetchone()
    total = int(row["n"]) if row else 0
    cur = await conn.execute(
        _SCORED + " SELECT g.* FROM grouped g" + where
        + " ORDER BY g.monetary DESC, g.profile_id LIMIT %(limit)s OFFSET %(offset)s",
        params,
    )  # fmt: skip
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
        for r in await cur.fetchall()
    ]
    return total, page
