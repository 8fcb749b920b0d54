"""The per-customer and per-product facts (migration 0017) equal a walk over the raw orders after
a sync, a full re-sync, late earlier orders, an order moving to another profile, and a rebuild.

`assert_customer_facts_exact` (tests/integration/analytics/checks.py) recomputes them in Python
from the raw Placed Order events: each order's next order and running totals, the customer
months (with the cohort), the product days, per-(order, product) predecessors and "bought next".
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg

from klaviyo_analytics import wiring
from klaviyo_analytics.analytics.customer_facts import CUSTOMER_FACT_TABLES
from klaviyo_analytics.analytics.facts import rebuild_facts
from klaviyo_analytics.db.pool import Conn, Database
from klaviyo_analytics.db.repos.events import Event, EventRepository
from klaviyo_analytics.sandbox.server import SandboxServer
from tests.fixtures.sync import sync_service
from tests.integration.analytics.checks import assert_customer_facts_exact
from tests.integration.analytics.truth import compute, table

TZ = "America/New_York"
ORDER_COLUMNS = "next_order_id, next_order_ts, orders_to_date, revenue_to_date, next_order_date"


def snapshot(conninfo: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every stored customer fact, as text (so that 10.5 and 10.50 differ)."""
    with psycopg.connect(conninfo) as conn:
        out = {
            t: conn.execute(f"SELECT t::text FROM {t} t ORDER BY 1").fetchall()
            for t in CUSTOMER_FACT_TABLES
        }
        out["fact_orders"] = conn.execute(
            f"SELECT order_id, ({ORDER_COLUMNS})::text FROM fact_orders ORDER BY 1, 2"
        ).fetchall()
        return out


def exact(conninfo: str) -> None:
    assert_customer_facts_exact(conninfo, compute(conninfo, TZ))


async def _run(conninfo: str, work: Any) -> None:
    async with Database(conninfo, min_size=1, max_size=2) as db:
        await db.run(work)


async def _hooks(conn: Conn, *events: Event) -> None:
    """Run the sync's after-events hooks as the sync does, for each event's instant."""
    for event in events:
        for hook in wiring.AFTER_EVENTS:
            await hook(conn, event.timestamp, event.timestamp, TZ)


async def test_customer_facts_after_a_sync_equal_a_walk_over_the_raw_orders(
    synced_conninfo: str,
) -> None:
    exact(synced_conninfo)
    # Not trivially true: repeat customers, several cohorts, products bought again and next.
    facts = table(
        synced_conninfo,
        "SELECT (SELECT count(*) FROM fact_orders WHERE next_order_id IS NOT NULL) AS repeats,"
        " (SELECT count(DISTINCT first_order_date) FROM fact_customer_months) AS cohorts,"
        " (SELECT count(*) FROM fact_product_orders WHERE prev_date IS NOT NULL) AS again,"
        " (SELECT count(*) FROM fact_product_next) AS next",
    )[0]
    assert all(v > 0 for v in facts.values()), facts


async def test_customer_facts_stay_exact_and_unchanged_after_a_full_resync(
    synced_conninfo: str, sandbox: SandboxServer
) -> None:
    before = snapshot(synced_conninfo)
    async with sync_service(synced_conninfo, sandbox) as service:
        await service.sync_all(full=True)
    assert snapshot(synced_conninfo) == before
    exact(synced_conninfo)


async def test_late_earlier_orders_move_the_cohort_and_the_predecessors_next_order(
    synced_conninfo: str,
) -> None:
    # A repeat customer whose first two orders have lines; one late order 40 days before its
    # first (an earlier cohort month) and one between its first and second orders, both with
    # a product of its first order too (so that product gets a second and third purchase).
    first, second = table(
        synced_conninfo,
        "SELECT * FROM fact_orders WHERE profile_id = ("
        " SELECT o.profile_id FROM fact_orders o WHERE o.next_order_id IS NOT NULL"
        "  AND o.prev_order_date IS NULL AND EXISTS (SELECT 1 FROM fact_order_lines l"
        "   WHERE l.order_id = o.order_id) ORDER BY o.profile_id LIMIT 1)"
        ' ORDER BY "timestamp", order_id LIMIT 2',
    )
    metric = table(synced_conninfo, "SELECT id FROM klaviyo_metrics WHERE name = 'Placed Order'")
    profile = first["profile_id"]
    again = table(
        synced_conninfo,
        "SELECT product_id FROM fact_order_lines WHERE order_id = %(o)s ORDER BY line LIMIT 1",
        o=first["order_id"],
    )[0]["product_id"]

    def order(name: str, at: Any, product: str) -> Event:
        items = [{"ProductID": p, "SKU": p.upper(), "ProductName": p, "Quantity": 1,
                  "ItemPrice": 12.5, "RowTotal": 12.5} for p in (product, again)]  # fmt: skip
        return Event(id=name, timestamp=at, metric_id=metric[0]["id"], profile_id=profile,
                     value=Decimal("12.50"), properties={"$value": 12.5, "$event_id": name,
                                                         "Items": items})  # fmt: skip

    early = order("late-early", first["timestamp"] - timedelta(days=40), "late-early-product")
    between = order(
        "late-between", first["timestamp"] + (second["timestamp"] - first["timestamp"]) / 2,
        "late-between-product",
    )  # fmt: skip

    async def work(conn: Conn) -> None:
        for event in (early, between):
            await EventRepository().upsert_many(conn, [event])
            await _hooks(conn, event)

    await _run(synced_conninfo, work)
    exact(synced_conninfo)
    orders = {
        r["order_id"]: r
        for r in table(
            synced_conninfo, "SELECT * FROM fact_orders WHERE profile_id = %(p)s", p=profile
        )
    }
    assert orders["late-early"]["next_order_id"] == first["order_id"]
    assert orders[first["order_id"]]["next_order_id"] == "late-between"
    assert orders["late-between"]["next_order_id"] == second["order_id"]
    cohorts = table(
        synced_conninfo,
        "SELECT DISTINCT first_order_date FROM fact_customer_months WHERE profile_id = %(p)s",
        p=profile,
    )
    assert [r["first_order_date"] for r in cohorts] == [orders["late-early"]["date"]]
    bought_next = table(
        synced_conninfo,
        "SELECT next_product_id FROM fact_product_next WHERE date = %(d)s"
        " AND next_product_id = 'late-between-product'",
        d=first["date"],
    )
    assert bought_next
    third = table(
        synced_conninfo,
        "SELECT prev_date, prev2_date FROM fact_product_orders WHERE order_id = 'late-between'"
        " AND product_id = %(p)s",
        p=again,
    )
    assert third == [{"prev_date": first["date"], "prev2_date": orders["late-early"]["date"]}]


async def test_orders_moved_to_another_profile_leave_no_trace_on_the_old_one(
    synced_conninfo: str,
) -> None:
    # Re-synced under another customer's profile: a one-order customer's order, and the last
    # order of a repeat customer (whose previous order then has no next order any more).
    only = table(
        synced_conninfo,
        "SELECT o.* FROM fact_orders o WHERE o.prev_order_date IS NULL"
        " AND o.next_order_id IS NULL AND o.profile_id IS NOT NULL"
        " AND EXISTS (SELECT 1 FROM fact_order_lines l WHERE l.order_id = o.order_id)"
        " ORDER BY o.order_id LIMIT 1",
    )[0]
    last = table(
        synced_conninfo,
        "SELECT o.* FROM fact_orders o JOIN fact_orders p ON p.next_order_id = o.order_id"
        " WHERE o.next_order_id IS NULL AND p.date < o.date - 7"
        " AND EXISTS (SELECT 1 FROM fact_order_lines l WHERE l.order_id = o.order_id)"
        " AND EXISTS (SELECT 1 FROM fact_order_lines l WHERE l.order_id = p.order_id)"
        " ORDER BY o.order_id LIMIT 1",
    )[0]
    other = table(
        synced_conninfo,
        "SELECT profile_id FROM fact_orders WHERE profile_id <> ALL(%(p)s)"
        " AND next_order_id IS NOT NULL ORDER BY profile_id LIMIT 1",
        p=[only["profile_id"], last["profile_id"]],
    )[0]["profile_id"]
    with psycopg.connect(synced_conninfo) as conn:
        conn.execute(
            "UPDATE klaviyo_events SET profile_id = %s WHERE id = ANY(%s)",
            [other, [only["order_id"], last["order_id"]]],
        )

    async def work(conn: Conn) -> None:
        for moved in (only, last):
            await _hooks(conn, Event(id=moved["order_id"], timestamp=moved["timestamp"],
                                     metric_id=""))  # fmt: skip

    await _run(synced_conninfo, work)
    exact(synced_conninfo)
    for name in ("fact_customer_months", "fact_product_orders"):
        rows = table(
            synced_conninfo, f"SELECT * FROM {name} WHERE profile_id = %(p)s", p=only["profile_id"]
        )
        assert rows == [], name
    before = table(
        synced_conninfo,
        "SELECT next_order_id FROM fact_orders WHERE profile_id = %(p)s",
        p=last["profile_id"],
    )
    assert before and all(r["next_order_id"] != last["order_id"] for r in before)


async def test_new_items_of_an_order_change_what_its_predecessor_bought_next(
    synced_conninfo: str,
) -> None:
    # A re-synced repeat order with other items: the previous order's "bought next" changes on
    # the previous order's date, which the refresh of the later order's range does not cover.
    later = table(
        synced_conninfo,
        "SELECT n.* FROM fact_orders o JOIN fact_orders n ON n.order_id = o.next_order_id"
        " WHERE o.date < n.date - 7"
        " AND EXISTS (SELECT 1 FROM fact_order_lines l WHERE l.order_id = o.order_id)"
        " ORDER BY n.order_id LIMIT 1",
    )[0]
    items = [{"ProductID": "re-synced-item", "SKU": "RS", "ProductName": "Re-synced",
              "Quantity": 3, "ItemPrice": 2.5, "RowTotal": 7.5}]  # fmt: skip
    with psycopg.connect(synced_conninfo) as conn:
        conn.execute(
            "UPDATE klaviyo_events SET properties = jsonb_set(properties, '{Items}', %s::jsonb)"
            " WHERE id = %s",
            [json.dumps(items), later["order_id"]],
        )

    async def work(conn: Conn) -> None:
        await _hooks(conn, Event(id=later["order_id"], timestamp=later["timestamp"], metric_id=""))

    await _run(synced_conninfo, work)
    exact(synced_conninfo)
    assert table(
        synced_conninfo,
        "SELECT * FROM fact_product_next WHERE next_product_id = 're-synced-item'",
    )


async def test_rebuild_gives_the_same_customer_facts_as_the_sync_hooks(
    synced_conninfo: str,
) -> None:
    before = snapshot(synced_conninfo)
    with psycopg.connect(synced_conninfo) as conn:
        conn.execute("UPDATE fact_orders SET next_order_id = NULL, orders_to_date = 0")
        conn.execute("DELETE FROM fact_customer_months WHERE month > '2000-01-01'")
        conn.execute("DELETE FROM fact_product_next")

    async def work(conn: Conn) -> None:
        counts = await rebuild_facts(conn, TZ)
        assert all(counts[t] > 0 for t in CUSTOMER_FACT_TABLES), counts

    await _run(synced_conninfo, work)
    assert snapshot(synced_conninfo) == before
    exact(synced_conninfo)
