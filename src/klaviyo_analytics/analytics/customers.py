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


# A customer's state on a day is one row of `fact_orders`: its last order dated on or before the
# day (the one whose next order, in (date, timestamp, id) order, is later or absent), which
# carries its order count and revenue to date. `st` holds the states on %(as_of)s and on
# %(earlier)s (<= as_of): the rows dated by as_of whose next order is after earlier.
_STATES: LiteralString = (
    "st AS MATERIALIZED ("
    " SELECT profile_id, date, orders_to_date AS frequency, revenue_to_date AS monetary,"
    "  next_order_date IS NULL OR next_order_date > %(as_of)s AS is_cur,"
    "  date <= %(earlier)s AS is_prev"
    " FROM fact_orders WHERE profile_id IS NOT NULL AND date <= %(as_of)s"
    "  AND next_order_date IS NULL"
    " UNION ALL"
    " SELECT profile_id, date, orders_to_date, revenue_to_date,"
    "  next_order_date > %(as_of)s, date <= %(earlier)s"
    " FROM fact_orders WHERE profile_id IS NOT NULL AND date <= %(as_of)s"
    "  AND next_order_date > %(earlier)s)"
)


def _cuts(name: LiteralString) -> LiteralString:
    """Return the CTEs that score population `name` (the `st` rows flagged is_`name`).

    Scores are 1 + floor(5 * percent_rank), capped at 5, with percent_rank = (values ranked
    before) / (customers - 1), so equal values get equal scores; computed exactly in integers
    without a window over the customers: recency (ranked descending: an older last order
    ranks before) and frequency from a histogram of their few distinct values (values ranked
    before = a running sum of counts), monetary from four cut values (score >= k + 1 exactly
    when at least ceil(k * (n - 1) / 5) values are below it, that is when it exceeds the
    ceil(k * (n - 1) / 5)-th smallest).
    """
    rows: LiteralString = " FROM st WHERE is_" + name
    return (
        name + "_r AS ("
        " SELECT date, (sum(c) OVER (ORDER BY date) - c)::bigint AS ahead,"
        "  (sum(c) OVER ())::bigint AS n"
        " FROM (SELECT date, count(*) AS c" + rows + " GROUP BY 1) h"
        "), " + name + "_f AS ("
        " SELECT frequency, (sum(c) OVER (ORDER BY frequency) - c)::bigint AS below"
        " FROM (SELECT frequency, count(*) AS c" + rows + " GROUP BY 1) h"
        # The k-th cut is the ceil(k * (n - 1) / 5)-th smallest monetary value (1-based).
        "), " + name + "_m AS MATERIALIZED ("
        " SELECT a[((n + 3) / 5)::int] AS m1, a[((2 * n + 2) / 5)::int] AS m2,"
        "  a[((3 * n + 1) / 5)::int] AS m3, a[((4 * n) / 5)::int] AS m4"
        " FROM (SELECT count(*) AS n, array_agg(monetary ORDER BY monetary) AS a" + rows + ") x)"
    )  # fmt: skip


def _scores(name: LiteralString) -> LiteralString:
    """Return `name`_r, `name`_f, `name`_m: the scores of `st` row x in population `name`."""
    r: LiteralString = name + "r"
    one: LiteralString = "CASE WHEN " + r + ".n < 2 THEN 1 ELSE "
    return (
        one + "least(5, 1 + 5 * " + r + ".ahead / (" + r + ".n - 1)) END AS " + name + "_r, "
        + one + "least(5, 1 + 5 * " + name + "f.below / (" + r + ".n - 1)) END AS " + name + "_f, "
        + one + "1 + (x.monetary > " + name + "m.m1)::int + (x.monetary > " + name + "m.m2)::int"
        " + (x.monetary > " + name + "m.m3)::int + (x.monetary > " + name + "m.m4)::int END"
        " AS " + name + "_m"
    )  # fmt: skip


def _joins(name: LiteralString) -> LiteralString:
    return (
        " LEFT JOIN " + name + "_r " + name + "r ON x.is_" + name + " AND " + name + "r.date = x.date"
        " LEFT JOIN " + name + "_f " + name + "f ON x.is_" + name
        + " AND " + name + "f.frequency = x.frequency"
        " CROSS JOIN " + name + "_m " + name + "m"
    )  # fmt: skip


def _group(name: LiteralString) -> LiteralString:
    return (
        "CASE WHEN is_" + name + " THEN "
        + _GROUP_SQL.replace("r_score", name + "_r").replace("f_score", name + "_f")
        .replace("m_score", name + "_m")
        + " END AS " + name + "_segment"
    )  # fmt: skip


def _grouped(*names: LiteralString) -> LiteralString:
    """Return `WITH ... grouped`: every state row of `st` with its group on each day in
    `names` ("cur": as_of, "prev": earlier) where it is the customer's state then (a customer
    without an order between the days has one row for both)."""
    out: LiteralString = "WITH " + _STATES
    scores: LiteralString = ""
    joins: LiteralString = ""
    groups: LiteralString = ""
    for name in names:
        out += ", " + _cuts(name)
        scores += ", " + _scores(name)
        joins += _joins(name)
        groups += ", " + _group(name)
    return (
        out + ", scored AS (SELECT x.*" + scores + " FROM st x" + joins + ")"
        ", grouped AS (SELECT *" + groups + " FROM scored)"
    )


def _m_score(name: LiteralString) -> LiteralString:
    return (
        "CASE WHEN is_" + name + " THEN 1 + (monetary > " + name + "m.m1)::int"
        " + (monetary > " + name + "m.m2)::int + (monetary > " + name + "m.m3)::int"
        " + (monetary > " + name + "m.m4)::int END"
    )  # fmt: skip


# The groups on as_of of every customer and its group on earlier, without scoring customer by
# customer: state rows are first counted per cell of (last order date, orders, monetary score)
# on each day (a customer who did not order in between is one row for both days; a recent
# buyer's two rows are paired by profile), and only the few thousand cells are scored.
_MOVEMENT: LiteralString = (
    "WITH " + _STATES + ", " + _cuts("cur") + ", " + _cuts("prev")
    + ", b AS (SELECT st.*, " + _m_score("cur") + " AS m_cur, " + _m_score("prev") + " AS m_prev"
    " FROM st CROSS JOIN cur_m curm CROSS JOIN prev_m prevm"
    "), cells AS ("
    " SELECT date, frequency, m_cur, date AS p_date, frequency AS p_frequency, m_prev,"
    "  count(*) AS customers, sum(frequency) AS orders, sum(monetary) AS revenue"
    " FROM b WHERE is_cur AND is_prev GROUP BY 1, 2, 3, 6"
    " UNION ALL"
    " SELECT c.date, c.frequency, c.m_cur, p.date, p.frequency, p.m_prev,"
    "  count(*), sum(c.frequency), sum(c.monetary)"
    " FROM b c LEFT JOIN b p ON p.profile_id = c.profile_id AND p.is_prev AND NOT p.is_cur"
    " WHERE c.is_cur AND NOT c.is_prev GROUP BY 1, 2, 3, 4, 5, 6"
    "), scored AS ("
    " SELECT x.*, true AS is_cur, x.p_date IS NOT NULL AS is_prev,"
    "  CASE WHEN curr.n < 2 THEN 1 ELSE least(5, 1 + 5 * curr.ahead / (curr.n - 1)) END AS cur_r,"
    "  CASE WHEN curr.n < 2 THEN 1 ELSE least(5, 1 + 5 * curf.below / (curr.n - 1)) END AS cur_f,"
    "  CASE WHEN curr.n < 2 THEN 1 ELSE x.m_cur END AS cur_m,"
    "  CASE WHEN prevr.n < 2 THEN 1 ELSE least(5, 1 + 5 * prevr.ahead / (prevr.n - 1)) END"
    "   AS prev_r,"
    "  CASE WHEN prevr.n < 2 THEN 1 ELSE least(5, 1 + 5 * prevf.below / (prevr.n - 1)) END"
    "   AS prev_f,"
    "  CASE WHEN prevr.n < 2 THEN 1 ELSE x.m_prev END AS prev_m"
    " FROM cells x JOIN cur_r curr ON curr.date = x.date"
    " JOIN cur_f curf ON curf.frequency = x.frequency"
    " LEFT JOIN prev_r prevr ON prevr.date = x.p_date"
    " LEFT JOIN prev_f prevf ON prevf.frequency = x.p_frequency"
    ")"
    " SELECT " + _group("cur").replace(" AS cur_segment", " AS to_group") + ", "
    + _group("prev").replace(" AS prev_segment", " AS from_group")
    + ", sum(customers) AS customers, sum(orders) AS orders, sum(revenue) AS revenue"
    " FROM scored GROUP BY 1, 2"
)  # fmt: skip


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
    # Each customer's group now and 30 days earlier (None: no order by then).
    cur = await conn.execute(_MOVEMENT, {"as_of": as_of, "earlier": earlier})
    customers: dict[str, int] = defaultdict(int)
    orders: dict[str, int] = defaultdict(int)
    revenue: dict[str, Decimal] = defaultdict(lambda: ZERO)
    moved: dict[tuple[str | None, str], int] = defaultdict(int)
    for row in await cur.fetchall():
        to_group, n = row["to_group"], int(row["customers"])
        customers[to_group] += n
        orders[to_group] += int(row["orders"])
        revenue[to_group] += Decimal(row["revenue"])
        if row["from_group"] != to_group:
            moved[(row["from_group"], to_group)] += n
    groups = [
        RfmGroup(group=name, customers=customers[name], orders=orders[name],
                 revenue=revenue[name])
        for name in GROUPS
    ]  # fmt: skip
    moves = [RfmMove(a, b, n) for (a, b), n in moved.items()]
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
    # The state on as_of only: with earlier = as_of, `st` holds exactly those rows.
    params = {"as_of": as_of, "earlier": as_of, "group": group, "limit": limit, "offset": offset}
    cur = await conn.execute(
        _grouped("cur") + ", chosen AS ("
        " SELECT profile_id, %(as_of)s::date - date AS recency_days, frequency, monetary,"
        "  date AS last_order, cur_r AS r_score, cur_f AS f_score, cur_m AS m_score,"
        "  cur_segment AS segment FROM grouped"
        " WHERE %(group)s::text IS NULL OR cur_segment = %(group)s::text),"
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
