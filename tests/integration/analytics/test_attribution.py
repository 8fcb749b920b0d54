"""Events built by hand: the store's day boundaries and the last-touch attribution fallback."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from klaviyo_analytics.analytics.facts import refresh_facts
from klaviyo_analytics.analytics.kpis import overview
from klaviyo_analytics.analytics.periods import DateRange
from klaviyo_analytics.db.pool import Conn, Database
from klaviyo_analytics.db.repos.events import Event, EventRepository

NAMES = ("Placed Order", "Refunded Order", "Opened Email", "Clicked Email", "Clicked SMS")


async def _setup(conn: Conn) -> dict[str, str]:
    ids = {name: f"m{i}" for i, name in enumerate(NAMES)}
    for name, metric_id in ids.items():
        await conn.execute(
            "INSERT INTO klaviyo_metrics (id, name) VALUES (%s, %s)", (metric_id, name)
        )
    await conn.execute(
        "INSERT INTO klaviyo_campaigns (id, name, channel) VALUES ('C1', 'Email one', 'email'),"
        " ('C2', 'Text one', 'sms')"
    )
    await conn.execute(
        "INSERT INTO klaviyo_campaign_messages (id, campaign_id) VALUES ('M1', 'C1'), ('M2', 'C2')"
    )
    return ids


def order(ids: dict[str, str], n: int, when: datetime, value: str, profile: str = "P1") -> Event:
    return Event(
        id=f"order-{n}",
        timestamp=when,
        metric_id=ids["Placed Order"],
        profile_id=profile,
        value=Decimal(value),
        properties={"$value": float(value), "$event_id": f"o{n}"},
    )


def touch(ids: dict[str, str], name: str, n: int, when: datetime, profile: str = "P1") -> Event:
    campaign, message = ("C2", "M2") if "SMS" in name else ("C1", "M1")
    return Event(
        id=f"touch-{n}",
        timestamp=when,
        metric_id=ids[name],
        profile_id=profile,
        properties={"$message": message},
        attributed_source_type="campaign",
        attributed_source_id=campaign,
        attributed_message_id=message,
    )


async def _write(database: Database, tz: str, events_of: object) -> None:
    async def work(conn: Conn) -> None:
        ids = await _setup(conn)
        events: list[Event] = events_of(ids)  # type: ignore[operator]
        await EventRepository().upsert_many(conn, events)
        lo = min(e.timestamp for e in events)
        hi = max(e.timestamp for e in events)
        await refresh_facts(conn, lo, hi, tz)

    await database.run(work)


async def test_an_order_at_2330_local_time_counts_for_that_local_day_not_the_utc_day(
    database: Database,
) -> None:
    # 23:30 in New York on 14 March 2026 (EDT, UTC-4) is 03:30 UTC on 15 March.
    late = datetime(2026, 3, 15, 3, 30, tzinfo=UTC)
    # 00:30 New York on 2 January 2026 (EST, UTC-5) is 05:30 UTC: still 2 January.
    early = datetime(2026, 1, 2, 5, 30, tzinfo=UTC)
    await _write(
        database,
        "America/New_York",
        lambda ids: [order(ids, 1, late, "40.00"), order(ids, 2, early, "10.00", "P2")],
    )
    rows = await database.fetch_all("SELECT date, revenue, orders FROM fact_revenue ORDER BY 1")
    assert [(r["date"], r["revenue"], r["orders"]) for r in rows] == [
        (date(2026, 1, 2), Decimal("10.00"), 1),
        (date(2026, 3, 14), Decimal("40.00"), 1),
    ]

    async def kpis(conn: Conn) -> tuple[Decimal, Decimal]:
        day = await overview(
            conn, DateRange(date(2026, 3, 14), date(2026, 3, 14)), "America/New_York"
        )
        after = await overview(
            conn, DateRange(date(2026, 3, 15), date(2026, 3, 15)), "America/New_York"
        )
        return day.revenue.current, after.revenue.current

    assert await database.run(kpis) == (Decimal("40.00"), Decimal(0))


async def test_the_same_instant_falls_on_the_utc_day_when_the_store_is_in_utc(
    database: Database,
) -> None:
    late = datetime(2026, 3, 15, 3, 30, tzinfo=UTC)
    await _write(database, "UTC", lambda ids: [order(ids, 1, late, "40.00")])
    rows = await database.fetch_all("SELECT date FROM fact_revenue")
    assert [r["date"] for r in rows] == [date(2026, 3, 15)]


@pytest.mark.parametrize(
    ("touch_name", "gap", "channel"),
    [
        ("Clicked Email", timedelta(hours=119), "email_campaign"),
        ("Opened Email", timedelta(hours=120), "email_campaign"),
        ("Clicked Email", timedelta(hours=120, seconds=1), "unattributed"),
        ("Clicked SMS", timedelta(hours=23), "sms_campaign"),
        ("Clicked SMS", timedelta(hours=25), "unattributed"),
    ],
)
async def test_an_unattributed_order_is_credited_to_the_last_touch_only_within_its_window(
    database: Database, touch_name: str, gap: timedelta, channel: str
) -> None:
    at = datetime(2026, 5, 10, 16, 0, tzinfo=UTC)
    await _write(
        database,
        "America/New_York",
        lambda ids: [touch(ids, touch_name, 1, at - gap), order(ids, 1, at, "25.00")],
    )
    rows = await database.fetch_all("SELECT * FROM fact_orders")
    assert [(r["channel"], r["attribution"]) for r in rows] == [
        (channel, "none" if channel == "unattributed" else "last_touch")
    ]
    conversions = await database.fetch_all("SELECT * FROM fact_conversions")
    if channel == "unattributed":
        assert conversions == []
    else:
        assert [(c["source_id"], c["message_id"], c["revenue"]) for c in conversions] == [
            ("C2" if "SMS" in touch_name else "C1", "M2" if "SMS" in touch_name else "M1",
             Decimal("25.00"))
        ]  # fmt: skip


async def test_the_most_recent_touch_wins_and_another_profiles_touch_never_counts(
    database: Database,
) -> None:
    at = datetime(2026, 5, 10, 16, 0, tzinfo=UTC)
    await _write(
        database,
        "UTC",
        lambda ids: [
            touch(ids, "Clicked Email", 1, at - timedelta(hours=5)),
            touch(ids, "Clicked SMS", 2, at - timedelta(hours=2)),
            touch(ids, "Clicked Email", 3, at - timedelta(hours=1), profile="P2"),
            touch(ids, "Clicked Email", 4, at + timedelta(minutes=1)),
            order(ids, 1, at, "25.00"),
        ],
    )
    rows = await database.fetch_all("SELECT channel, message_id FROM fact_orders")
    assert [(r["channel"], r["message_id"]) for r in rows] == [("sms_campaign", "M2")]


async def test_klaviyos_own_attribution_wins_over_a_later_touch_and_refunds_follow_the_order(
    database: Database,
) -> None:
    at = datetime(2026, 5, 10, 16, 0, tzinfo=UTC)

    def events(ids: dict[str, str]) -> list[Event]:
        attributed = Event(
            id="order-1",
            timestamp=at,
            metric_id=ids["Placed Order"],
            profile_id="P1",
            value=Decimal("80.00"),
            properties={"$value": 80.0, "$event_id": "o1"},
            attributed_source_type="campaign",
            attributed_source_id="C2",
            attributed_message_id="M2",
        )
        refund = Event(
            id="refund-1",
            timestamp=at + timedelta(days=1),
            metric_id=ids["Refunded Order"],
            profile_id="P1",
            value=Decimal("-30.00"),
            properties={"$value": -30.0, "OrderId": "o1"},
        )
        return [touch(ids, "Clicked Email", 1, at - timedelta(minutes=5)), attributed, refund]

    await _write(database, "UTC", events)
    rows = await database.fetch_all(
        "SELECT date, channel, revenue, refunds, net_revenue FROM fact_revenue ORDER BY date"
    )
    assert [(r["channel"], r["revenue"], r["refunds"], r["net_revenue"]) for r in rows] == [
        ("sms_campaign", Decimal("80.00"), Decimal(0), Decimal("80.00")),
        ("sms_campaign", Decimal(0), Decimal("30.00"), Decimal("-30.00")),
    ]
