"""Per-customer and per-product facts behind cohorts, RFM and products, kept exact.

They are derived from `fact_orders` and `fact_order_lines` alone, and what one profile's
orders give never depends on another profile's, so after a refresh they are recomputed for
the profiles it touched: every profile with an order on or after the first refreshed date,
and every profile one of whose orders the refresh removed (an order that moved to another
profile, or away from a refreshed date). Cost follows those profiles' orders and lines, not
the history:

* on `fact_orders`: the previous-order dates (distinct customers of a range), the next order
  in (timestamp, id) order ("bought next"), and in (date, timestamp, id) order the running
  order count and revenue and the next order's date (a customer's RFM state on any day);
  only rows whose values change are written;
* `fact_customer_months` and `fact_product_orders`: the touched profiles' rows, deleted and
  rewritten;
* `fact_product_days`: the refreshed dates (a date's lines depend on its orders alone);
* `fact_product_next`: the refreshed dates, the dates of the touched profiles' orders whose
  next order changed, and of those whose next order's lines the sync rewrote (its range).

`rebuild_customer_facts` recomputes everything (after `analytics rebuild` rewrote the facts
and the order lines). Definitions and costs: docs/analytics.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any, LiteralString

from klaviyo_analytics.db.pool import Conn

__all__ = ["CUSTOMER_FACT_TABLES", "rebuild_customer_facts", "update_customer_facts"]

logger = logging.getLogger(__name__)

CUSTOMER_FACT_TABLES: tuple[LiteralString, ...] = (
    "fact_customer_months",
    "fact_product_orders",
    "fact_product_days",
    "fact_product_next",
)

# The profiles a refresh touched: those with an order on or after its first date, and those of
# the orders it deleted (%(profiles)s).
_TOUCHED_IDS: LiteralString = (
    "(SELECT profile_id FROM fact_orders WHERE profile_id IS NOT NULL AND date >= %(since)s"
    " UNION SELECT unnest(%(profiles)s::text[]))"
)
# (The explicit IS NOT NULL lets the planner use the partial per-profile indexes.)
_TOUCHED: LiteralString = "profile_id IS NOT NULL AND profile_id IN " + _TOUCHED_IDS
_EVERY: LiteralString = "profile_id IS NOT NULL"

_ORDER_COLUMNS: tuple[LiteralString, ...] = (
    "prev_order_date",
    "prev_buyer_date",
    "next_order_id",
    "next_order_ts",
    "orders_to_date",
    "revenue_to_date",
    "next_order_date",
)


def _update_orders(profiles: LiteralString) -> LiteralString:
    # Previous orders and the next order by (timestamp, order_id); running totals and the next
    # order's date by (date, timestamp, order_id), so that a customer's state on a day is the
    # row of its last order dated then or before, in any zone (local dates follow timestamps
    # except across a DST change at midnight). Revenue is compared as text so that a changed
    # scale (10.5 vs 10.50) is written too: the reads must equal a rebuild to the byte.
    sets = ", ".join(c + " = s." + c for c in _ORDER_COLUMNS)
    old = ", ".join("f." + c + ("::text" if c == "revenue_to_date" else "") for c in _ORDER_COLUMNS)
    new = old.replace("f.", "s.")
    return (
        "UPDATE fact_orders f SET " + sets +
        ' FROM (SELECT order_id, "timestamp",'
        "  max(date) OVER w AS prev_order_date,"
        "  max(date) FILTER (WHERE channel <> 'unattributed') OVER w AS prev_buyer_date,"
        '  lead(order_id) OVER t AS next_order_id, lead("timestamp") OVER t AS next_order_ts,'
        "  (count(*) OVER d)::integer AS orders_to_date, sum(value) OVER d AS revenue_to_date,"
        '  lead(date) OVER (PARTITION BY profile_id ORDER BY date, "timestamp", order_id)'
        "   AS next_order_date"
        "  FROM fact_orders WHERE " + profiles +
        '  WINDOW t AS (PARTITION BY profile_id ORDER BY "timestamp", order_id),'
        "   w AS (t ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),"
        '   d AS (PARTITION BY profile_id ORDER BY date, "timestamp", order_id'
        "    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) s"
        ' WHERE f.order_id = s.order_id AND f."timestamp" = s."timestamp"'
        " AND (" + old + ") IS DISTINCT FROM (" + new + ")"
        " RETURNING f.date"
    )  # fmt: skip


def _months(profiles: LiteralString) -> LiteralString:
    return (
        "INSERT INTO fact_customer_months (profile_id, month, first_order_date, orders, revenue,"
        " attributed_revenue)"
        " SELECT profile_id, date_trunc('month', date)::date,"
        "  min(min(date)) OVER (PARTITION BY profile_id), count(*), sum(value),"
        "  coalesce(sum(value) FILTER (WHERE channel <> 'unattributed'), 0)"
        " FROM fact_orders WHERE " + profiles +
        " GROUP BY profile_id, date_trunc('month', date)::date"
    )  # fmt: skip


def _product_orders(profiles: LiteralString) -> LiteralString:
    return (
        'INSERT INTO fact_product_orders (order_id, "timestamp", product_id, date, profile_id,'
        " prev_date, prev2_date)"
        ' SELECT order_id, "timestamp", product_id, date, profile_id,'
        "  lag(date) OVER w, lag(date, 2) OVER w"
        ' FROM (SELECT DISTINCT order_id, "timestamp", product_id, date, profile_id'
        "  FROM fact_order_lines WHERE " + profiles + ") l"
        ' WINDOW w AS (PARTITION BY profile_id, product_id ORDER BY date, "timestamp", order_id)'
    )  # fmt: skip


def _product_days(dates: LiteralString) -> LiteralString:
    return (
        "INSERT INTO fact_product_days (date, product_id, orders, units, revenue, sku,"
        " product_name)"
        " SELECT date, product_id, count(DISTINCT order_id), sum(quantity), sum(row_total),"
        "  max(sku), max(product_name)"
        " FROM fact_order_lines" + dates + " GROUP BY date, product_id"
    )  # fmt: skip


def _product_next(dates: LiteralString) -> LiteralString:
    return (
        "INSERT INTO fact_product_next (date, product_id, next_product_id, orders)"
        " SELECT l.date, l.product_id, n.product_id, count(DISTINCT l.order_id)"
        " FROM fact_order_lines l"
        ' JOIN fact_orders o ON o.order_id = l.order_id AND o."timestamp" = l."timestamp"'
        ' JOIN fact_order_lines n ON n.order_id = o.next_order_id AND n."timestamp" = o.next_order_ts'
        + dates + " GROUP BY l.date, l.product_id, n.product_id"
    )  # fmt: skip


_ON_DATES: LiteralString = " WHERE date = ANY(%(dates)s::date[])"
_ON_LINE_DATES: LiteralString = " WHERE l.date = ANY(%(dates)s::date[])"
# The touched profiles' orders whose next order may have new lines: one in the range whose
# lines the sync rewrote, else (range unknown) any on or after the first refreshed date.
_PREDECESSOR_DATES: LiteralString = (
    "SELECT DISTINCT f.date FROM fact_orders f"
    ' JOIN fact_orders n ON n.order_id = f.next_order_id AND n."timestamp" = f.next_order_ts'
    " WHERE f.profile_id IN " + _TOUCHED_IDS + " AND n.date >= %(since)s"
)
_PREDECESSOR_DATES_IN: LiteralString = (
    "SELECT DISTINCT date FROM fact_orders WHERE "
    + _TOUCHED
    + " AND next_order_ts >= %(lo)s AND next_order_ts <= %(hi)s"
)


async def update_customer_facts(
    conn: Conn,
    *,
    since: date,
    profiles: Iterable[str],
    dates: Iterable[date],
    lines: tuple[datetime, datetime] | None = None,
) -> int:
    """Bring the customer and product facts up to date after a refresh of `dates`.

    `since` is the first refreshed date and `profiles` those of the orders the refresh
    deleted; the refresh rewrote `fact_orders` on `dates`, and the order lines of those dates
    are current. `lines` is the time range whose orders' lines were rewritten (the sync's
    range; None: any order on the dates). Returns the `fact_orders` rows that changed.
    """
    gone = sorted(set(profiles))
    params: dict[str, Any] = {"since": since, "profiles": gone}
    cur = await conn.execute(_update_orders(_TOUCHED), params)
    changed = {row["date"] for row in await cur.fetchall()}
    await conn.execute("DELETE FROM fact_customer_months WHERE " + _TOUCHED, params)
    await conn.execute(_months(_TOUCHED), params)
    await conn.execute("DELETE FROM fact_product_orders WHERE " + _TOUCHED, params)
    await conn.execute(_product_orders(_TOUCHED), params)
    refreshed = sorted(set(dates))
    await conn.execute("DELETE FROM fact_product_days" + _ON_DATES, {"dates": refreshed})
    await conn.execute(_product_days(_ON_DATES), {"dates": refreshed})
    if lines is None:
        cur = await conn.execute(_PREDECESSOR_DATES, params)
    else:
        cur = await conn.execute(_PREDECESSOR_DATES_IN, {**params, "lo": lines[0], "hi": lines[1]})
    later = sorted(changed | set(refreshed) | {row["date"] for row in await cur.fetchall()})
    await conn.execute("DELETE FROM fact_product_next" + _ON_DATES, {"dates": later})
    await conn.execute(_product_next(_ON_LINE_DATES), {"dates": later})
    logger.debug(
        "customer facts of %d deleted-order profiles and the profiles with orders since %s:"
        " %d orders changed, %d dates of product facts",
        len(gone),
        since,
        len(changed),
        len(later),
    )
    return len(changed)


async def rebuild_customer_facts(conn: Conn) -> None:
    """Recompute every customer and product fact from `fact_orders` and `fact_order_lines`."""
    await conn.execute(_update_orders(_EVERY))
    for table in CUSTOMER_FACT_TABLES:
        await conn.execute("TRUNCATE " + table)
    await conn.execute(_months(_EVERY))
    await conn.execute(_product_orders(_EVERY))
    await conn.execute(_product_days(""))
    await conn.execute(_product_next(""))
