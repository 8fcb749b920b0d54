"""Assertions that the stored facts equal the independent truth, table by table."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from tests.integration.analytics.truth import MESSAGE_COLUMNS, Truth, compute, table


def assert_facts_exact(conninfo: str, tz: str) -> Truth:
    """Assert every fact row equals what the raw events give; return the truth."""
    truth = compute(conninfo, tz)
    revenue = {(r["date"], r["channel"]): r for r in table(conninfo, "SELECT * FROM fact_revenue")}
    expected_revenue = {
        key: {
            "revenue": v["revenue"],
            "refunds": v["refunds"],
            "net_revenue": v["revenue"] - v["refunds"],
            "orders": v["orders"],
            "unique_customers": len(v["customers"]),
        }
        for key, v in truth.revenue.items()
    }
    assert {
        k: {c: r[c] for c in expected_revenue[k]}
        for k, r in revenue.items()
        if k in expected_revenue
    } == expected_revenue
    assert set(revenue) == set(expected_revenue)

    messages = {
        (r["date"], r["source_type"], r["source_id"], r["message_id"]): r
        for r in table(conninfo, "SELECT * FROM fact_message_engagement")
    }
    assert set(messages) == set(truth.messages)
    for key, want in truth.messages.items():
        got = messages[key]
        assert {c: got[c] for c in (*MESSAGE_COLUMNS, "channel")} == want, key

    conversions = {
        (r["date"], r["source_type"], r["source_id"], r["message_id"]): (
            r["conversions"],
            r["revenue"],
        )
        for r in table(conninfo, "SELECT * FROM fact_conversions")
    }
    expected_conv: dict[Any, list[Any]] = defaultdict(lambda: [0, Decimal(0)])
    for o in truth.orders:
        if o["source_id"] is not None:
            key = (o["day"], o["source_type"], o["source_id"], o["message_id"] or "")
            expected_conv[key][0] += 1
            expected_conv[key][1] += o["value"]
    assert conversions == {k: tuple(v) for k, v in expected_conv.items()}

    forms = {
        (r["date"], r["form_id"]): (r["views"], r["submissions"])
        for r in table(conninfo, "SELECT * FROM fact_forms")
    }
    assert forms == truth.forms

    engagement = {
        (r["date"], r["channel"], r["metric_type"]): (r["count"], r["unique_count"])
        for r in table(conninfo, "SELECT * FROM fact_engagement")
    }
    sums: dict[Any, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (day, _, _, _), m in truth.messages.items():
        for c in MESSAGE_COLUMNS:
            sums[(day, m["channel"])][c] += m[c]
    expected_eng: dict[Any, tuple[int, int]] = {}
    for (day, channel), s in sums.items():
        for metric, count, unique in (
            ("recipients", s["recipients"], s["recipients"]),
            ("delivered", s["delivered"], s["delivered"]),
            ("bounced", s["bounces"], s["bounces"]),
            ("opened", s["opens"], s["unique_opens"]),
            ("clicked", s["clicks"], s["unique_clicks"]),
            ("unsubscribed", s["unsubscribes"], s["unsubscribes"]),
            ("spam_complaint", s["spam_complaints"], s["spam_complaints"]),
        ):
            expected_eng[(day, channel, metric)] = (count, unique)
    buyers: dict[Any, list[Any]] = defaultdict(lambda: [0, set()])
    for o in truth.orders:
        if o["source_id"] is not None:
            buyers[(o["day"], o["channel"])][0] += 1
            buyers[(o["day"], o["channel"])][1].add(o["profile_id"])
    for (day, channel), (n, people) in buyers.items():
        expected_eng[(day, channel, "converted")] = (n, len(people))
    assert engagement == expected_eng
    rules = {
        (r["date"], r["channel"]): (r["klaviyo"], r["last_touch"])
        for r in table(
            conninfo,
            "SELECT date, channel,"
            " coalesce(sum(value) FILTER (WHERE attribution = 'klaviyo'), 0) AS klaviyo,"
            " coalesce(sum(value) FILTER (WHERE attribution = 'last_touch'), 0) AS last_touch"
            " FROM fact_orders GROUP BY 1, 2",
        )
    }
    assert {k: (r["klaviyo_revenue"], r["last_touch_revenue"]) for k, r in revenue.items()} == {
        k: rules.get(k, (0, 0)) for k in revenue
    }
    assert_predecessors_exact(conninfo, truth)
    assert_order_days_exact(conninfo, truth)
    assert_customer_facts_exact(conninfo, truth)
    return truth


def assert_predecessors_exact(conninfo: str, truth: Truth) -> None:
    """Assert each order's previous-order dates: the same profile's latest earlier order (and
    latest earlier attributed order) in (timestamp, id) order, walked here in Python."""
    expected: dict[str, tuple[Any, Any]] = {}
    last: dict[str, tuple[Any, Any]] = {}
    for o in sorted(truth.orders, key=lambda o: (o["ts"], o["id"])):
        if o["profile_id"] is None:
            expected[o["id"]] = (None, None)
            continue
        before = last.get(o["profile_id"], (None, None))
        expected[o["id"]] = before
        buyer = o["day"] if o["channel"] != "unattributed" else before[1]
        last[o["profile_id"]] = (o["day"], buyer)
    stored = {
        r["order_id"]: (r["prev_order_date"], r["prev_buyer_date"])
        for r in table(
            conninfo, "SELECT order_id, prev_order_date, prev_buyer_date FROM fact_orders"
        )
    }
    assert stored == expected
    # The sandbox's customers order more than once, so the walk above is not trivial.
    assert any(p is not None for p, _ in expected.values())


def assert_order_days_exact(conninfo: str, truth: Truth) -> None:
    """Assert `fact_order_days` (kept by triggers on fact_orders) equals a count of the orders
    with a profile walked here: per day, those dated then, the first orders, the orders whose
    previous order is then, and the same over attributed orders."""
    expected: dict[Any, list[int]] = defaultdict(lambda: [0] * 6)
    last: dict[str, tuple[Any, Any]] = {}
    for o in sorted(truth.orders, key=lambda o: (o["ts"], o["id"])):
        if o["profile_id"] is None:
            continue
        prev, prev_buyer = last.get(o["profile_id"], (None, None))
        expected[o["day"]][0] += 1
        expected[o["day"]][1] += prev is None
        if prev is not None:
            expected[prev][2] += 1
        if o["channel"] != "unattributed":
            expected[o["day"]][3] += 1
            expected[o["day"]][4] += prev_buyer is None
            if prev_buyer is not None:
                expected[prev_buyer][5] += 1
            prev_buyer = o["day"]
        last[o["profile_id"]] = (o["day"], prev_buyer)
    stored = {
        r["date"]: [r["orders"], r["firsts"], r["prevs"], r["buyer_orders"], r["buyer_firsts"],
                    r["buyer_prevs"]]
        for r in table(conninfo, "SELECT * FROM fact_order_days")
    }  # fmt: skip
    assert {d: v for d, v in stored.items() if any(v)} == dict(expected)
    assert any(v[2] for v in expected.values())  # repeat orders: the walk is not trivial


def _items(conninfo: str) -> dict[str, list[dict[str, Any]]]:
    """The `Items` of every Placed Order event, by order id (the sandbox's Shopify shape)."""
    found = table(
        conninfo,
        "SELECT e.id, e.properties -> 'Items' AS items FROM klaviyo_events e"
        " JOIN klaviyo_metrics m ON m.id = e.metric_id WHERE m.name = 'Placed Order'",
    )
    out: dict[str, list[dict[str, Any]]] = {}
    for r in found:
        items = r["items"] if isinstance(r["items"], list) else []
        out[r["id"]] = [
            {
                "product": i.get("ProductID") or i.get("SKU") or i.get("ProductName"),
                "sku": i.get("SKU"),
                "name": i.get("ProductName"),
                "qty": Decimal(str(i.get("Quantity", 1))),
                "row": Decimal(str(i["RowTotal"])),
            }
            for i in items
            if isinstance(i, dict) and (i.get("ProductID") or i.get("SKU") or i.get("ProductName"))
        ]
    return out


def assert_customer_facts_exact(conninfo: str, truth: Truth) -> None:
    """Assert the per-customer and per-product facts equal a walk over the raw orders here:
    each order's next order and running totals, the customer months, and the product facts."""
    by_profile: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for o in truth.orders:
        if o["profile_id"] is not None:
            by_profile[o["profile_id"]].append(o)
    expected: dict[str, tuple[Any, ...]] = {
        o["id"]: (None, None, None, None, None) for o in truth.orders if o["profile_id"] is None
    }
    nxt: dict[str, Any] = {}
    months: dict[tuple[str, Any], list[Any]] = {}
    for profile, mine in by_profile.items():
        by_time = sorted(mine, key=lambda o: (o["ts"], o["id"]))
        for a, b in zip(by_time, [*by_time[1:], None], strict=True):
            nxt[a["id"]] = b
        by_day = sorted(mine, key=lambda o: (o["day"], o["ts"], o["id"]))
        running = Decimal(0)
        first = by_day[0]["day"]
        for k, o in enumerate(by_day):
            running = o["value"] if k == 0 else running + o["value"]
            later = by_day[k + 1]["day"] if k + 1 < len(by_day) else None
            n = nxt[o["id"]]
            expected[o["id"]] = (
                n["id"] if n else None,
                n["ts"] if n else None,
                k + 1,
                str(running),
                later,
            )
            cell = months.setdefault(
                (profile, o["day"].replace(day=1)), [first, 0, Decimal(0), Decimal(0)]
            )
            cell[1] += 1
            cell[2] += o["value"]
            if o["channel"] != "unattributed":
                cell[3] += o["value"]
    stored = {
        r["order_id"]: (r["next_order_id"], r["next_order_ts"], r["orders_to_date"],
                        None if r["revenue_to_date"] is None else str(r["revenue_to_date"]),
                        r["next_order_date"])
        for r in table(conninfo, "SELECT * FROM fact_orders")
    }  # fmt: skip
    assert stored == expected
    got_months = {
        (r["profile_id"], r["month"]): [r["first_order_date"], r["orders"], r["revenue"],
                                        r["attributed_revenue"]]
        for r in table(conninfo, "SELECT * FROM fact_customer_months")
    }  # fmt: skip
    assert got_months == months

    items = _items(conninfo)
    days: dict[tuple[Any, str], list[Any]] = {}
    pairs: dict[tuple[Any, str, str], set[str]] = defaultdict(set)
    seen: dict[tuple[str, str], list[Any]] = defaultdict(list)
    product_orders: dict[tuple[str, str], tuple[Any, ...]] = {}
    for o in sorted(truth.orders, key=lambda o: (o["day"], o["ts"], o["id"])):
        lines = items.get(o["id"], [])
        for line in lines:
            cell = days.setdefault((o["day"], line["product"]), [set(), Decimal(0), Decimal(0),
                                                                 None, None])  # fmt: skip
            cell[0].add(o["id"])
            cell[1] += line["qty"]
            cell[2] += line["row"]
            cell[3] = max(filter(None, (cell[3], line["sku"])), default=None)
            cell[4] = max(filter(None, (cell[4], line["name"])), default=None)
        if o["profile_id"] is None:
            continue
        for product in sorted({line["product"] for line in lines}):
            before = seen[(o["profile_id"], product)]
            product_orders[(o["id"], product)] = (
                o["day"], o["profile_id"], before[-1] if before else None,
                before[-2] if len(before) > 1 else None,
            )  # fmt: skip
            before.append(o["day"])
        following = nxt[o["id"]]
        if following is not None:
            for product in {line["product"] for line in lines}:
                for then in {line["product"] for line in items.get(following["id"], [])}:
                    pairs[(o["day"], product, then)].add(o["id"])
    got_days = {
        (r["date"], r["product_id"]): [r["orders"], r["units"], r["revenue"], r["sku"],
                                       r["product_name"]]
        for r in table(conninfo, "SELECT * FROM fact_product_days")
    }  # fmt: skip
    assert got_days == {k: [len(v[0]), *v[1:]] for k, v in days.items()}
    got_orders = {
        (r["order_id"], r["product_id"]): (r["date"], r["profile_id"], r["prev_date"],
                                           r["prev2_date"])
        for r in table(conninfo, "SELECT * FROM fact_product_orders")
    }  # fmt: skip
    assert got_orders == product_orders
    got_next = {
        (r["date"], r["product_id"], r["next_product_id"]): r["orders"]
        for r in table(conninfo, "SELECT * FROM fact_product_next")
    }
    assert got_next == {k: len(v) for k, v in pairs.items()}
