"""Overview KPIs and performance tables equal independent computations over raw events."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

from klaviyo_analytics.analytics import performance as perf
from klaviyo_analytics.analytics.errors import InvalidParameterError
from klaviyo_analytics.analytics.facts import refresh_facts
from klaviyo_analytics.analytics.kpis import Compare, Overview, comparison, overview
from klaviyo_analytics.analytics.periods import DateRange, store_timezone
from klaviyo_analytics.db.pool import Conn, Database
from klaviyo_analytics.db.repos.events import Event, EventRepository
from klaviyo_analytics.errors import NotFoundError
from tests.integration.analytics.truth import Truth, compute, table

TZ = "America/New_York"


def span(conninfo: str) -> DateRange:
    row = table(
        conninfo,
        "SELECT (min(timestamp) AT TIME ZONE %(tz)s)::date AS a,"
        " (max(timestamp) AT TIME ZONE %(tz)s)::date AS b FROM klaviyo_events",
        tz=TZ,
    )[0]
    return DateRange(row["a"], row["b"])


async def read(conninfo: str, work: Any) -> Any:
    async with Database(conninfo, min_size=1, max_size=2) as db:
        return await db.run(work, readonly=True)


def expected_overview(conninfo: str, truth: Truth, rng: DateRange) -> dict[str, Decimal]:
    inside = [o for o in truth.orders if rng.start <= o["day"] <= rng.end]
    revenue = sum((o["value"] for o in inside), Decimal(0))
    refunds = sum(
        (r["value"] for r in truth.refunds if rng.start <= r["day"] <= rng.end), Decimal(0)
    )
    messages = [m for (d, *_), m in truth.messages.items() if rng.start <= d <= rng.end]
    email = [m for m in messages if m["channel"].startswith("email")]
    delivered = sum(m["delivered"] for m in messages)
    email_delivered = sum(m["delivered"] for m in email)
    lo, hi = rng.bounds(TZ)
    row = table(
        conninfo,
        "SELECT (SELECT count(*) FROM klaviyo_events e JOIN klaviyo_metrics m ON m.id = e.metric_id"
        "  WHERE m.name = 'Submitted Form' AND e.timestamp >= %(lo)s AND e.timestamp < %(hi)s)"
        "  AS forms,"
        " (SELECT count(*) FROM klaviyo_events e JOIN klaviyo_metrics m ON m.id = e.metric_id"
        "  WHERE m.name = 'Subscribed to Email Marketing'"
        "  AND e.timestamp >= %(lo)s AND e.timestamp < %(hi)s) AS subscribed",
        lo=lo,
        hi=hi,
    )[0]

    def rate(n: int, d: int) -> Decimal:
        return (Decimal(n) / Decimal(d)).quantize(Decimal("0.000001")) if d else Decimal("0.000000")

    return {
        "revenue": revenue,
        "refunds": refunds,
        "net_revenue": revenue - refunds,
        "orders": Decimal(len(inside)),
        "aov": (revenue / len(inside)).quantize(Decimal("0.01")) if inside else Decimal("0.00"),
        "unique_customers": Decimal(len({o["profile_id"] for o in inside})),
        "open_rate": rate(sum(m["unique_opens"] for m in email), email_delivered),
        "click_rate": rate(sum(m["unique_clicks"] for m in messages), delivered),
        "conversion_rate": rate(
            len({o["profile_id"] for o in inside if o["channel"] != "unattributed"}), delivered
        ),
        "form_submissions": Decimal(row["forms"]),
        # The sandbox records Klaviyo's consent events: new subscribers count those.
        "subscribers": Decimal(row["subscribed"]),
    }


@pytest.mark.parametrize("days", [7, 14, 30])
async def test_overview_equals_independent_figures_for_the_range_and_the_previous_range(
    synced_conninfo: str, days: int
) -> None:
    whole = span(synced_conninfo)
    rng = DateRange(whole.end - timedelta(days=days - 1), whole.end)
    truth = compute(synced_conninfo, TZ)

    async def work(conn: Conn) -> Overview:
        return await overview(conn, rng, TZ)

    got = await read(synced_conninfo, work)
    now, before = (
        expected_overview(synced_conninfo, truth, rng),
        expected_overview(synced_conninfo, truth, rng.previous()),
    )
    for name, want in now.items():
        change = getattr(got, name)
        assert (change.current, change.previous) == (want, before[name]), name
        if before[name]:
            assert change.change_pct == round(float((want - before[name]) / before[name] * 100), 2)
        else:
            assert change.change_pct is None
    assert got.revenue.current > 0
    assert got.previous_range == rng.previous()
    by_channel: dict[str, Decimal] = {}
    for o in truth.orders:
        if rng.start <= o["day"] <= rng.end:
            by_channel[o["channel"]] = by_channel.get(o["channel"], Decimal(0)) + o["value"]
    assert {c: v for c, v in got.revenue_by_channel.items() if v} == by_channel
    last = table(synced_conninfo, "SELECT max(timestamp) AS t FROM klaviyo_events")[0]["t"]
    assert got.data_through == last


@pytest.mark.parametrize(
    ("part", "compare"),
    [("first day", "previous"), ("middle third", "previous"), ("last day", "previous"),
     ("all", "previous"), ("all", "year"), ("second half", "previous")],
)  # fmt: skip
async def test_unique_customers_and_buyers_of_any_range_count_each_profile_once(
    synced_conninfo: str, part: str, compare: Compare
) -> None:
    # Customers come from per-day counts less the orders whose gap spans the range: ranges
    # with orders after them, at the start of the orders, and a comparison before any order.
    truth = compute(synced_conninfo, TZ)
    days = sorted(o["day"] for o in truth.orders)
    whole = DateRange(days[0], days[-1])
    third = timedelta(days=whole.days // 3)
    rng = {
        "first day": DateRange(whole.start, whole.start),
        "middle third": DateRange(whole.start + third, whole.end - third),
        "last day": DateRange(whole.end, whole.end),
        "all": whole,
        "second half": DateRange(whole.start + timedelta(days=whole.days // 2), whole.end),
    }[part]

    async def work(conn: Conn) -> Overview:
        return await overview(conn, rng, TZ, compare)

    got = await read(synced_conninfo, work)
    now = expected_overview(synced_conninfo, truth, rng)
    before = expected_overview(synced_conninfo, truth, comparison(rng, compare))
    for name in ("unique_customers", "conversion_rate"):
        figure = getattr(got, name)
        assert (figure.current, figure.previous) == (now[name], before[name]), name
    assert got.unique_customers.current > 0


async def test_a_customer_who_orders_only_before_and_after_a_range_is_not_counted_in_it(
    synced_conninfo: str,
) -> None:
    # Two attributed orders of a new customer, 20 days apart, around a 10-day range: the
    # per-day counts alone would count them in it; the order whose gap spans the range
    # takes them out again, as a customer and as a buyer.
    whole = span(synced_conninfo)
    rng = DateRange(whole.end - timedelta(days=15), whole.end - timedelta(days=6))
    metric = table(synced_conninfo, "SELECT id FROM klaviyo_metrics WHERE name = 'Placed Order'")
    source = table(
        synced_conninfo,
        "SELECT c.id AS campaign, m.id AS message FROM klaviyo_campaigns c"
        " JOIN klaviyo_campaign_messages m ON m.campaign_id = c.id LIMIT 1",
    )[0]
    orders = [
        Event(
            id=f"spanning-{n}",
            timestamp=DateRange(day, day).bounds(TZ)[0] + timedelta(hours=12),
            metric_id=metric[0]["id"],
            profile_id="spanning-customer",
            value=Decimal("25.00"),
            properties={"$value": 25.0, "$event_id": f"spanning-{n}"},
            attributed_source_type="campaign",
            attributed_source_id=source["campaign"],
            attributed_message_id=source["message"],
        )
        for n, day in enumerate((rng.start - timedelta(days=5), rng.end + timedelta(days=5)))
    ]

    async def write(conn: Conn) -> None:
        await EventRepository().upsert_many(conn, orders)
        await refresh_facts(conn, orders[0].timestamp, orders[1].timestamp, TZ)

    async with Database(synced_conninfo, min_size=1, max_size=2) as db:
        await db.run(write)
    truth = compute(synced_conninfo, TZ)
    assert {o["channel"] for o in truth.orders if o["profile_id"] == "spanning-customer"} != {
        "unattributed"
    }

    async def work(conn: Conn) -> Overview:
        return await overview(conn, rng, TZ)

    got = await read(synced_conninfo, work)
    want = expected_overview(synced_conninfo, truth, rng)
    assert got.unique_customers.current == want["unique_customers"]
    assert got.conversion_rate.current == want["conversion_rate"]


async def test_a_late_order_before_a_customers_orders_moves_their_first_order_in_the_range(
    synced_conninfo: str,
) -> None:
    # The late order lands more than the refresh's touch window before the customer's next
    # order, so that order's date is not recomputed: only its stored previous-order date says
    # the customer is already counted. Counting them twice would show here.
    whole = span(synced_conninfo)
    rng = DateRange(whole.end - timedelta(days=29), whole.end)
    truth = compute(synced_conninfo, TZ)
    firsts: dict[str, Any] = {}
    for o in sorted(truth.orders, key=lambda o: o["ts"]):
        if o["profile_id"] is not None and rng.start <= o["day"] <= rng.end:
            firsts.setdefault(o["profile_id"], o)
    late_day = rng.start + timedelta(days=1)
    customer, first = next(
        (p, o) for p, o in firsts.items() if o["day"] >= late_day + timedelta(days=8)
    )
    metric = table(synced_conninfo, "SELECT id FROM klaviyo_metrics WHERE name = 'Placed Order'")
    lo, _ = DateRange(late_day, late_day).bounds(TZ)
    late = Event(
        id="late-order-before-first",
        timestamp=lo + timedelta(hours=12),
        metric_id=metric[0]["id"],
        profile_id=customer,
        value=Decimal("10.00"),
        properties={"$value": 10.0, "$event_id": "late-order-before-first"},
    )

    async def write(conn: Conn) -> None:
        await EventRepository().upsert_many(conn, [late])
        await refresh_facts(conn, late.timestamp, late.timestamp, TZ)

    async with Database(synced_conninfo, min_size=1, max_size=2) as db:
        await db.run(write)
    stored = table(
        synced_conninfo,
        "SELECT prev_order_date FROM fact_orders WHERE order_id = %(id)s",
        id=first["id"],
    )
    assert stored[0]["prev_order_date"] == late_day
    truth = compute(synced_conninfo, TZ)

    async def work(conn: Conn) -> Overview:
        return await overview(conn, rng, TZ)

    got = await read(synced_conninfo, work)
    want = expected_overview(synced_conninfo, truth, rng)
    assert got.unique_customers.current == want["unique_customers"]
    assert got.conversion_rate.current == want["conversion_rate"]
    assert got.orders.current == want["orders"]


async def test_campaign_and_flow_rows_equal_independent_sums_per_source(
    synced_conninfo: str,
) -> None:
    whole = span(synced_conninfo)
    rng = DateRange(whole.end - timedelta(days=9), whole.end)
    truth = compute(synced_conninfo, TZ)

    def expected(source_type: str, key: int) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for k, m in truth.messages.items():
            if k[1] == source_type and rng.start <= k[0] <= rng.end:
                row = out.setdefault(k[key], {"recipients": 0, "delivered": 0, "unique_opens": 0,
                                              "unique_clicks": 0, "unsubscribes": 0,
                                              "conversions": 0, "revenue": Decimal(0)})  # fmt: skip
                for c in (
                    "recipients",
                    "delivered",
                    "unique_opens",
                    "unique_clicks",
                    "unsubscribes",
                ):
                    row[c] += m[c]
        for o in truth.orders:
            if o["source_type"] == source_type and rng.start <= o["day"] <= rng.end:
                ident = o["source_id"] if key == 2 else o["message_id"]
                row = out.setdefault(ident, {"recipients": 0, "delivered": 0, "unique_opens": 0,
                                             "unique_clicks": 0, "unsubscribes": 0,
                                             "conversions": 0, "revenue": Decimal(0)})  # fmt: skip
                row["conversions"] += 1
                row["revenue"] += o["value"]
        return out

    async def work(conn: Conn) -> tuple[Any, Any, dict[str, Any]]:
        campaigns = await perf.campaign_performance(conn, rng, TZ, limit=1000)
        flows = await perf.flow_performance(conn, rng, TZ, limit=1000)
        messages = {}
        for f in flows.rows:
            for m in (await perf.flow_message_performance(conn, rng, TZ, f.id)).rows:
                messages[m.id] = m
        return campaigns, flows, messages

    campaigns, flows, messages = await read(synced_conninfo, work)
    fields = ("recipients", "delivered", "unique_opens", "unique_clicks", "unsubscribes",
              "conversions", "revenue")  # fmt: skip
    got_c = {r.id: {f: getattr(r, f) for f in fields} for r in campaigns.rows}
    assert {k: v for k, v in got_c.items() if any(v.values())} == expected("campaign", 2)
    assert campaigns.total == len(campaigns.rows)
    got_f = {r.id: {f: getattr(r, f) for f in fields} for r in flows.rows}
    assert {k: v for k, v in got_f.items() if any(v.values())} == expected("flow", 2)
    got_m = {i: {f: getattr(r, f) for f in fields} for i, r in messages.items()}
    assert {k: v for k, v in got_m.items() if any(v.values())} == expected("flow", 3)
    for r in campaigns.rows:
        # SMS has no opens: its open rate is missing, not 0 %.
        want = (
            (Decimal(r.unique_opens) / r.delivered).quantize(Decimal("0.000001"))
            if r.delivered and r.channel == "email"
            else None
        )
        assert r.open_rate == want, (r.name, r.channel)
    assert any(r.channel == "sms" for r in campaigns.rows)
    ordered = [r.revenue for r in campaigns.rows]
    assert ordered == sorted(ordered, reverse=True)


async def test_tables_sort_only_by_listed_columns_and_page_with_a_total(
    synced_conninfo: str,
) -> None:
    rng = span(synced_conninfo)

    async def work(conn: Conn) -> None:
        with pytest.raises(InvalidParameterError, match="sort by one of: name, channel"):
            await perf.campaign_performance(conn, rng, TZ, sort="id; DROP TABLE x")
        with pytest.raises(InvalidParameterError, match="limit"):
            await perf.flow_performance(conn, rng, TZ, limit=0)
        with pytest.raises(NotFoundError, match="nope"):
            await perf.flow_message_performance(conn, rng, TZ, "nope")
        everything = await perf.campaign_performance(conn, rng, TZ, sort="name", descending=False)
        assert [r.name for r in everything.rows] == sorted(r.name for r in everything.rows)
        page = await perf.campaign_performance(conn, rng, TZ, sort="name", descending=False,
                                               limit=2, offset=1)  # fmt: skip
        assert page.total == everything.total > 2
        assert page.rows == everything.rows[1:3]
        found = await perf.campaign_performance(conn, rng, TZ, search="sms")
        assert found.rows and all("SMS" in r.name for r in found.rows)
        assert found.total < everything.total
        forms = await perf.form_performance(conn, rng, TZ)
        assert sum(f.submissions for f in forms.rows) > 0
        segments = await perf.top_segments(conn, rng, TZ, limit=2)
        assert len(segments) == 2
        assert (segments[0].profile_count or 0) >= (segments[1].profile_count or 0)

    await read(synced_conninfo, work)


async def test_chart_series_add_up_to_the_overview(synced_conninfo: str) -> None:
    rng = span(synced_conninfo)

    async def work(conn: Conn) -> None:
        view = await overview(conn, rng, TZ)
        points = await perf.revenue_by_day(conn, rng, TZ)
        assert len(points) == rng.days * 5
        assert sum(p.revenue for p in points) == view.revenue.current
        shares = await perf.channel_distribution(conn, rng, TZ)
        assert {s.channel: s.revenue for s in shares} == view.revenue_by_channel
        assert abs(sum(s.share_pct or 0 for s in shares) - 100) < 0.05
        engagement = await perf.engagement_by_day(conn, rng, TZ)
        assert sum(p.delivered for p in engagement) > 0

    await read(synced_conninfo, work)


async def test_store_timezone_prefers_the_override_then_the_account_then_utc(
    synced_conninfo: str, database: Database
) -> None:
    async def synced(conn: Conn) -> tuple[str, str]:
        return await store_timezone(conn), await store_timezone(conn, "Europe/Paris")

    assert await read(synced_conninfo, synced) == (TZ, "Europe/Paris")
    assert await database.run(store_timezone) == "UTC"


async def test_search_matches_names_literally_on_every_table(database: Database) -> None:
    # "50%" and "a_b" must find only the names holding them, not what LIKE's wildcards match.
    names = ["50% off", "500 club", "a_b test", "axb test"]
    rng = DateRange(date(2026, 1, 1), date(2026, 1, 31))

    async def work(conn: Conn) -> None:
        for i, name in enumerate(names):
            await conn.execute(
                "INSERT INTO klaviyo_campaigns (id, name, channel, send_time)"
                " VALUES (%s, %s, 'email', '2026-01-10T12:00:00Z')",
                (f"c{i}", name),
            )
            await conn.execute(
                "INSERT INTO klaviyo_flows (id, name) VALUES (%s, %s)", (f"f{i}", name)
            )
            await conn.execute(
                "INSERT INTO klaviyo_forms (id, name) VALUES (%s, %s)", (f"o{i}", name)
            )
            await conn.execute(
                "INSERT INTO klaviyo_segments (id, name) VALUES (%s, %s)", (f"s{i}", name)
            )
        tables = (perf.campaign_performance, perf.flow_performance, perf.form_performance,
                  perf.segment_performance)  # fmt: skip
        for listing in tables:
            for search, expected in (("50%", ["50% off"]), ("a_b", ["a_b test"]),
                                     ("50", ["50% off", "500 club"])):  # fmt: skip
                found = await listing(conn, rng, TZ, search=search, sort="name", descending=False)
                assert [r.name for r in found.rows] == expected, (listing.__name__, search)
                assert found.total == len(expected)

    await database.run(work)
