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
    assert_predecessors_exact(conninfo, truth)
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
