"""Facts equal independent computations over raw events: after a sync, a re-sync, late events."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import psycopg
import pytest

from klaviyo_analytics.analytics.facts import rebuild_facts, refresh_dim_time, refresh_facts
from klaviyo_analytics.db.pool import Conn, Database
from klaviyo_analytics.db.repos.events import Event, EventRepository
from klaviyo_analytics.sandbox.server import SandboxServer
from tests.fixtures.sync import sync_service
from tests.integration.analytics.checks import assert_facts_exact
from tests.integration.analytics.truth import table

TZ = "America/New_York"


def fingerprint(conninfo: str) -> dict[str, list[tuple[object, ...]]]:
    with psycopg.connect(conninfo) as conn:
        return {
            t: conn.execute(f"SELECT {cols} FROM {t} ORDER BY 1, 2, 3").fetchall()
            for t, cols in (
                (
                    "fact_revenue",
                    "date, channel, revenue, refunds, net_revenue, orders, unique_customers",
                ),
                ("fact_engagement", "date, channel, metric_type, count, unique_count, rate"),
                (
                    "fact_conversions",
                    "date, source_type, source_id, message_id, conversions, revenue",
                ),
                ("fact_orders", "order_id, timestamp, channel, source_id, message_id, attribution"),
                (
                    "fact_message_engagement",
                    "date, source_type, message_id, recipients, unique_opens",
                ),
                ("fact_forms", "date, form_id, views, submissions"),
            )
        }


async def test_every_fact_row_after_a_sync_equals_an_independent_computation_over_raw_events(
    synced_conninfo: str,
) -> None:
    truth = assert_facts_exact(synced_conninfo, TZ)
    # The sandbox's data exercise every path: Klaviyo attribution, last touch, refunds, forms.
    channels = {o["channel"] for o in truth.orders}
    assert {"email_campaign", "email_flow", "unattributed"} <= channels
    assert truth.refunds
    assert truth.forms
    attribution = {r["attribution"] for r in table(synced_conninfo, "SELECT * FROM fact_orders")}
    assert attribution == {"klaviyo", "last_touch", "none"}


async def test_order_revenue_equals_the_sum_of_placed_order_values_and_refunds_are_positive(
    synced_conninfo: str,
) -> None:
    raw = table(
        synced_conninfo,
        "SELECT m.name, sum(e.value) AS v, count(*) AS n FROM klaviyo_events e"
        " JOIN klaviyo_metrics m ON m.id = e.metric_id"
        " WHERE m.name IN ('Placed Order', 'Refunded Order') GROUP BY 1",
    )
    by_name = {r["name"]: r for r in raw}
    facts = table(
        synced_conninfo,
        "SELECT sum(revenue) AS revenue, sum(refunds) AS refunds, sum(net_revenue) AS net,"
        " sum(orders) AS orders FROM fact_revenue",
    )[0]
    assert facts["revenue"] == by_name["Placed Order"]["v"]
    assert facts["orders"] == by_name["Placed Order"]["n"]
    assert facts["refunds"] == abs(by_name["Refunded Order"]["v"]) > 0
    assert facts["net"] == facts["revenue"] - facts["refunds"]


async def test_facts_stay_exact_and_unchanged_after_a_full_resync(
    synced_conninfo: str, sandbox: SandboxServer
) -> None:
    before = fingerprint(synced_conninfo)
    async with sync_service(synced_conninfo, sandbox) as service:
        service.after_events.append(refresh_facts)
        await service.sync_all(full=True)
    assert_facts_exact(synced_conninfo, TZ)
    assert fingerprint(synced_conninfo) == before


async def _run(conninfo: str, work: object) -> None:
    async with Database(conninfo, min_size=1, max_size=2) as db:
        await db.run(work)  # type: ignore[arg-type]


@pytest.mark.parametrize("days_earlier", [2, 30])
async def test_facts_stay_exact_after_late_events_including_an_earlier_first_open(
    synced_conninfo: str, days_earlier: int
) -> None:
    # A late open of a message before the profile's first open of it: the old first day
    # loses a unique open, also when it lies beyond the attribution windows of the late
    # event (30 days). A late unattributed order right after it gets the last touch.
    first = table(
        synced_conninfo,
        "SELECT * FROM (SELECT DISTINCT ON (e.profile_id, e.attributed_message_id) e.*"
        " FROM klaviyo_events e JOIN klaviyo_metrics m ON m.id = e.metric_id"
        " WHERE m.name = 'Opened Email' AND e.attributed_message_id IS NOT NULL"
        " ORDER BY e.profile_id, e.attributed_message_id, e.timestamp) f"
        " ORDER BY timestamp DESC LIMIT 1",
    )[0]
    order_metric = table(
        synced_conninfo, "SELECT id FROM klaviyo_metrics WHERE name = 'Placed Order'"
    )[0]["id"]
    late_open = Event(
        id="late-open-1",
        timestamp=first["timestamp"] - timedelta(days=days_earlier),
        metric_id=first["metric_id"],
        profile_id=first["profile_id"],
        properties={"$message": first["attributed_message_id"]},
        attributed_source_type=first["attributed_source_type"],
        attributed_source_id=first["attributed_source_id"],
        attributed_message_id=first["attributed_message_id"],
    )
    late_order = Event(
        id="late-order-1",
        timestamp=late_open.timestamp + timedelta(hours=3),
        metric_id=order_metric,
        profile_id=first["profile_id"],
        value=Decimal("123.45"),
        properties={"$value": 123.45, "$event_id": "late-order-1"},
    )

    async def work(conn: Conn) -> None:
        for event in (late_open, late_order):
            await EventRepository().upsert_many(conn, [event])
            await refresh_facts(conn, event.timestamp, event.timestamp, TZ)

    await _run(synced_conninfo, work)
    assert_facts_exact(synced_conninfo, TZ)
    order = table(synced_conninfo, "SELECT * FROM fact_orders WHERE order_id = 'late-order-1'")
    assert order[0]["attribution"] == "last_touch"
    assert order[0]["message_id"] == first["attributed_message_id"]


async def test_rebuild_from_scratch_gives_the_same_facts_as_the_sync_hook(
    synced_conninfo: str,
) -> None:
    before = fingerprint(synced_conninfo)

    async def work(conn: Conn) -> None:
        counts = await rebuild_facts(conn, TZ)
        assert counts["fact_orders"] == len(before["fact_orders"])
        assert counts["dim_time"] > 0

    await _run(synced_conninfo, work)
    assert fingerprint(synced_conninfo) == before
    assert_facts_exact(synced_conninfo, TZ)


async def test_dim_time_holds_weekends_us_holidays_and_iso_weeks(database: Database) -> None:
    async def work(conn: Conn) -> int:
        return await refresh_dim_time(conn, date(2026, 12, 24), date(2027, 1, 4))

    assert await database.run(work) == 12
    rows = {r["date"]: r for r in await database.fetch_all("SELECT * FROM dim_time ORDER BY date")}
    assert rows[date(2026, 12, 25)]["is_holiday"] is True
    assert rows[date(2026, 12, 25)]["holiday_name"] == "Christmas Day"
    assert rows[date(2026, 12, 24)]["is_holiday"] is False
    assert rows[date(2027, 1, 1)]["holiday_name"] == "New Year's Day"
    assert rows[date(2026, 12, 26)]["is_weekend"] is True  # a Saturday
    assert rows[date(2026, 12, 28)]["is_weekend"] is False
    # 1 January 2027 is a Friday in ISO week 53 of 2026.
    assert (rows[date(2027, 1, 1)]["iso_year"], rows[date(2027, 1, 1)]["iso_week"]) == (2026, 53)
    assert rows[date(2027, 1, 4)]["day_of_week"] == 1
