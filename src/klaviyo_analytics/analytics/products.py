"""Product analytics over the product facts, and the shopping funnel over `fact_funnel_days`.

Products: per product, in a range of local dates, its orders, units, revenue (line totals at
the order's prices, before order-level discounts), customers, repeat-purchase rate and what its
buyers most often bought next. The funnel: profiles that viewed a product in the range, then
started a checkout, then placed an order, each step within 7 days of the previous one.
Definitions: docs/analytics.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import LiteralString

from klaviyo_analytics.analytics.funnel_facts import FUNNEL_WINDOW
from klaviyo_analytics.analytics.periods import DateRange
from klaviyo_analytics.db.pool import Conn

__all__ = [
    "FUNNEL_STEPS",
    "FUNNEL_WINDOW",
    "Funnel",
    "FunnelStep",
    "ProductRow",
    "funnel",
    "products",
]

FUNNEL_STEPS = ("Viewed Product", "Started Checkout", "Placed Order")


@dataclass(frozen=True)
class ProductRow:
    """One product's figures in a range."""

    product_id: str
    sku: str | None
    product_name: str | None
    orders: int
    units: Decimal
    revenue: Decimal
    customers: int
    repeat_customers: int
    repeat_purchase_rate: float
    bought_next: str | None
    bought_next_name: str | None
    bought_next_orders: int


# From the per-product facts (analytics.customer_facts): orders, units, revenue, SKU and name
# summed over days; customers and repeat customers counted on one row each of
# `fact_product_orders` (a profile's first order of the product in the range is the one whose
# previous order of it is before the range, its second the one whose previous is in it and
# whose one before is not); "bought next" summed over days of `fact_product_next`.
_PRODUCTS: LiteralString = (
    "WITH per AS ("
    " SELECT product_id, max(sku) AS sku, max(product_name) AS product_name,"
    "  sum(orders) AS orders, sum(units) AS units, sum(revenue) AS revenue"
    " FROM fact_product_days WHERE date >= %(start)s AND date <= %(end)s GROUP BY product_id"
    "), buyers AS ("
    " SELECT product_id,"
    "  count(*) FILTER (WHERE prev_date IS NULL OR prev_date < %(start)s) AS customers,"
    "  count(*) FILTER (WHERE prev_date >= %(start)s"
    "   AND (prev2_date IS NULL OR prev2_date < %(start)s)) AS repeaters"
    " FROM fact_product_orders WHERE date >= %(start)s AND date <= %(end)s GROUP BY product_id"
    "), nxt AS ("
    " SELECT product_id, next_product_id AS next_product, sum(orders) AS n FROM fact_product_next"
    " WHERE date >= %(start)s AND date <= %(end)s GROUP BY 1, 2"
    "), best AS ("
    " SELECT DISTINCT ON (product_id) product_id, next_product, n FROM nxt"
    " ORDER BY product_id, n DESC, next_product"
    ")"
    " SELECT p.*, coalesce(c.customers, 0) AS customers, coalesce(c.repeaters, 0) AS repeaters,"
    "  b.next_product, b.n AS next_orders, nm.product_name AS next_name"
    " FROM per p LEFT JOIN buyers c USING (product_id) LEFT JOIN best b USING (product_id)"
    " LEFT JOIN LATERAL (SELECT l.product_name FROM fact_order_lines l"
    '  WHERE l.product_id = b.next_product ORDER BY l."timestamp" DESC LIMIT 1) nm ON true'
    " ORDER BY p.revenue DESC, p.product_id"
)


async def products(conn: Conn, rng: DateRange) -> list[ProductRow]:
    """Return every product with a line in `rng`, by revenue (highest first).

    `repeat_purchase_rate` = customers who bought it in two or more orders of the range /
    customers who bought it there; `bought_next` = the product most often in the same
    customer's next order (any time later), ties to the smaller product id.
    """
    cur = await conn.execute(_PRODUCTS, {"start": rng.start, "end": rng.end})
    out = []
    for r in await cur.fetchall():
        customers = int(r["customers"])
        repeaters = int(r["repeaters"])
        out.append(
            ProductRow(
                product_id=r["product_id"],
                sku=r["sku"],
                product_name=r["product_name"],
                orders=int(r["orders"]),
                units=Decimal(r["units"]),
                revenue=Decimal(r["revenue"]),
                customers=customers,
                repeat_customers=repeaters,
                repeat_purchase_rate=round(repeaters / customers, 4) if customers else 0.0,
                bought_next=r["next_product"],
                bought_next_name=r["next_name"],
                bought_next_orders=int(r["next_orders"] or 0),
            )
        )
    return out


@dataclass(frozen=True)
class FunnelStep:
    """How many profiles reached a step, and the share of the previous step's."""

    step: str
    profiles: int
    conversion_rate: float | None


@dataclass(frozen=True)
class Funnel:
    """The funnel overall and per channel of each profile's last touch before its first view."""

    steps: list[FunnelStep]
    channels: dict[str, list[FunnelStep]]


# From `fact_funnel_days` (analytics.funnel_facts): a profile with a row on a date of the range
# viewed; its earliest such row is the one whose previous row is before the range, and carries
# its channel (the last touch before its first view in the range); it started (placed) if a row
# from that one on, up to the range's end, did. One index-only scan of the range's dates.
_FUNNEL: LiteralString = (
    "SELECT channel, count(*) AS viewed,"
    " count(*) FILTER (WHERE started_from <= %(end)s) AS started,"
    " count(*) FILTER (WHERE placed_from <= %(end)s) AS placed"
    " FROM fact_funnel_days WHERE date >= %(start)s AND date <= %(end)s"
    "  AND (prev_date IS NULL OR prev_date < %(start)s)"
    " GROUP BY channel"
)


def _steps(viewed: int, started: int, placed: int) -> list[FunnelStep]:
    counts = (viewed, started, placed)
    out = []
    for k, (name, n) in enumerate(zip(FUNNEL_STEPS, counts, strict=True)):
        before = counts[k - 1] if k else None
        rate = None if before is None else (round(n / before, 4) if before else 0.0)
        out.append(FunnelStep(name, n, rate))
    return out


async def funnel(conn: Conn, rng: DateRange) -> Funnel:
    """Return the funnel of profiles whose product views fall in `rng` (local dates).

    Checkouts and orders may fall up to the window after the range (they follow a view of it).
    Read from `fact_funnel_days`, built in the store's zone.
    """
    cur = await conn.execute(_FUNNEL, {"start": rng.start, "end": rng.end})
    rows = await cur.fetchall()
    channels = {
        r["channel"]: _steps(int(r["viewed"]), int(r["started"]), int(r["placed"])) for r in rows
    }
    total = _steps(*(sum(int(r[k]) for r in rows) for k in ("viewed", "started", "placed")))
    return Funnel(steps=total, channels=dict(sorted(channels.items())))
