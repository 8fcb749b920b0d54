"""Every repository method against a real database; repositories never commit."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from klaviyo_analytics.db.pool import Conn, Database
from klaviyo_analytics.db.repos.aggregates import AggregateRepository
from klaviyo_analytics.db.repos.audiences import (
    Form,
    FormRepository,
    KlaviyoList,
    ListRepository,
    Segment,
    SegmentRepository,
)
from klaviyo_analytics.db.repos.campaigns import (
    Campaign,
    CampaignMessage,
    CampaignMessageRepository,
    CampaignRepository,
)
from klaviyo_analytics.db.repos.events import Event, EventRepository
from klaviyo_analytics.db.repos.flows import (
    Flow,
    FlowAction,
    FlowActionRepository,
    FlowMessage,
    FlowMessageRepository,
    FlowRepository,
)
from klaviyo_analytics.db.repos.metrics import Metric, MetricRepository
from klaviyo_analytics.db.repos.profiles import Profile, ProfileRepository
from klaviyo_analytics.db.repos.sync_state import (
    StreamState,
    SyncRunRepository,
    SyncStateRepository,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def conn(database: Database):  # type: ignore[no-untyped-def]
    async with database.connection() as c, c.transaction(force_rollback=True):
        yield c


def order(i: int, *, value: str = "10.00", profile: str | None = "p1", at: datetime = T0) -> Event:
    return Event(
        id=f"e{i}",
        timestamp=at,
        metric_id="m-order",
        profile_id=profile,
        value=Decimal(value),
        properties={"$value": value, "items": ["a"]},
    )


async def test_crud_on_metrics(conn: Conn) -> None:
    repo = MetricRepository()
    await repo.insert(conn, Metric("m1", "Placed Order", integration_name="Shopify"))
    with pytest.raises(psycopg.errors.UniqueViolation):
        async with conn.transaction():
            await repo.insert(conn, Metric("m1", "dup"))
    assert (await repo.get(conn, "m1")) == Metric("m1", "Placed Order", integration_name="Shopify")
    assert await repo.update(conn, Metric("m1", "Placed Order", integration_name="WooCommerce"))
    assert not await repo.update(conn, Metric("missing", "x"))
    assert (await repo.find_by_name(conn, "Placed Order", "WooCommerce"))[0].id == "m1"
    assert await repo.find_by_name(conn, "Placed Order", "Shopify") == []
    assert await repo.ids_by_name(conn) == {"Placed Order": ["m1"]}
    assert await repo.delete(conn, "m1") and not await repo.delete(conn, "m1")
    assert await repo.get(conn, "m1") is None


async def test_upsert_reports_whether_anything_changed(conn: Conn) -> None:
    repo = ListRepository()
    assert await repo.upsert(conn, KlaviyoList("l1", "Newsletter", profile_count=10))
    assert not await repo.upsert(conn, KlaviyoList("l1", "Newsletter", profile_count=10))
    assert await repo.upsert(conn, KlaviyoList("l1", "Newsletter", profile_count=11))
    assert (await repo.get(conn, "l1")) == KlaviyoList("l1", "Newsletter", profile_count=11)


async def test_batch_upsert_twice_gives_the_same_rows_and_changes_nothing(conn: Conn) -> None:
    await MetricRepository().insert(conn, Metric("m-order", "Placed Order"))
    repo = EventRepository()
    batch = [order(i, value=f"{i}.50", at=T0 + timedelta(minutes=i)) for i in range(500)]
    assert await repo.upsert_many(conn, batch) == 500
    first = await conn.execute(
        "SELECT id, timestamp, value, properties, synced_at FROM klaviyo_events ORDER BY id"
    )
    before = await first.fetchall()
    assert await repo.upsert_many(conn, batch) == 0
    again = await conn.execute(
        "SELECT id, timestamp, value, properties, synced_at FROM klaviyo_events ORDER BY id"
    )
    assert await again.fetchall() == before
    assert await repo.count(conn) == 500


async def test_batch_upsert_updates_changed_rows_and_last_duplicate_wins(conn: Conn) -> None:
    repo = EventRepository()
    await repo.upsert_many(conn, [order(1), order(2)])
    changed = await repo.upsert_many(
        conn, [order(1, value="99.00"), order(3), order(3, value="-5.00")]
    )
    assert changed == 2
    got = {e.id: e.value for e in await repo.find_by_metric(conn, "m-order", T0, T0 + timedelta(1))}
    assert got == {"e1": Decimal("99.00"), "e2": Decimal("10.00"), "e3": Decimal("-5.00")}


async def test_batch_upsert_mixing_new_and_stored_rows_in_a_dense_range(conn: Conn) -> None:
    # Rows are stored every minute; batches whose range holds some of them mix changed,
    # unchanged and new rows: each is merged whole, new rows inserted, unchanged ones untouched.
    repo = EventRepository()
    assert await repo.upsert_many(conn, [order(i, at=T0 + timedelta(minutes=i)) for i in range(10)])
    mixed = [
        order(3, value="7.00", at=T0 + timedelta(minutes=3)),  # changed
        order(4, at=T0 + timedelta(minutes=4)),  # unchanged
        order(100, at=T0 + timedelta(minutes=4)),  # new, at a stored row's time
    ]
    assert await repo.upsert_many(conn, mixed) == 2
    # A batch whose range holds more stored rows than the batch itself.
    sparse = [order(5, value="8.00", at=T0 + timedelta(minutes=5)),
              order(101, at=T0 + timedelta(minutes=8))]  # fmt: skip
    assert await repo.upsert_many(conn, sparse) == 2
    got = {e.id: e.value for e in await repo.find_by_metric(conn, "m-order", T0, T0 + timedelta(1))}
    assert len(got) == 12
    assert (got["e3"], got["e4"], got["e5"], got["e100"]) == (
        Decimal("7.00"), Decimal("10.00"), Decimal("8.00"), Decimal("10.00"),
    )  # fmt: skip


async def test_batch_upsert_reads_nothing_of_the_history_outside_the_batch(conn: Conn) -> None:
    # The look-up of unchanged rows is bounded by the batch's times: a backfill's later pages do
    # not read the partitions (or chunks) its earlier pages filled, so its cost stays linear.
    repo = EventRepository()
    history = [order(i, at=T0 + timedelta(minutes=i)) for i in range(2000)]
    assert await repo.upsert_many(conn, history) == 2000

    cur = await conn.execute("SELECT DISTINCT tableoid::int AS t FROM klaviyo_events")
    filled = [row["t"] for row in await cur.fetchall()]  # the partitions or chunks of history

    async def scans() -> int:
        cur = await conn.execute(
            "SELECT coalesce(sum(seq_scan + coalesce(idx_scan, 0)), 0) AS n"
            " FROM pg_stat_xact_user_tables WHERE relid::int = ANY(%s)",
            (filled,),
        )
        row = await cur.fetchone()
        return int(row["n"]) if row else -1

    before = await scans()
    later = [order(10_000 + i, at=T0 + timedelta(days=70, minutes=i)) for i in range(500)]
    assert await repo.upsert_many(conn, later) == 500
    assert await scans() == before
    assert await repo.upsert_many(conn, later) == 0  # and unchanged rows are still found


async def test_batch_into_a_range_a_concurrent_writer_fills_meanwhile_loses_nothing(
    database: Database,
) -> None:
    # A batch whose time range holds nothing is copied straight into the table. Here another
    # transaction stores some of its keys after the batch looked and before it copies: the copy
    # waits for that writer, gives way when it commits, and the batch is merged instead. No
    # error, every row kept, and the batch's values win where they differ.
    repo = EventRepository()
    theirs = [order(i, at=T0 + timedelta(minutes=i)) for i in range(100)]
    ours = [order(i, value="20.00", at=T0 + timedelta(minutes=i)) for i in range(50, 150)]
    # A day later, committed: the month's partition, the metric and the profile exist, so
    # the second batch waits for nothing before it copies.
    await database.run(lambda c: repo.upsert_many(c, [order(999, at=T0 + timedelta(days=1))]))
    async with database.connection() as a, database.connection() as b:
        async with a.transaction():
            assert await repo.upsert_many(a, theirs) == 100
            pid = (await (await a.execute("SELECT pg_backend_pid() AS p")).fetchone() or {})["p"]

            async def write_ours() -> int:
                async with b.transaction():
                    return await repo.upsert_many(b, ours)

            task = asyncio.create_task(write_ours())
            async with database.connection() as watcher:
                for _ in range(500):  # until ours waits on the rows `a` has not committed
                    cur = await watcher.execute(
                        "SELECT count(*) AS n FROM pg_stat_activity"
                        " WHERE %s = ANY(pg_blocking_pids(pid))",
                        (pid,),
                    )
                    if ((await cur.fetchone()) or {}).get("n"):
                        break
                    await asyncio.sleep(0.02)
                else:
                    pytest.fail("the second batch never waited for the first writer's rows")
        # `a` committed: our copy met its keys, so our batch was merged over them.
        assert await task == 100  # 50 changed, 50 new
    async with database.connection() as c:
        stored = await repo.find_by_metric(c, "m-order", T0, T0 + timedelta(2))
    got = {e.id: e.value for e in stored}
    assert len(got) == 151
    assert all(got[f"e{i}"] == Decimal("10.00") for i in [*range(50), 999])
    assert all(got[f"e{i}"] == Decimal("20.00") for i in range(50, 150))


async def test_events_for_unknown_profiles_create_stubs_and_profileless_events_are_kept(
    conn: Conn,
) -> None:
    events = EventRepository()
    profiles = ProfileRepository()
    await events.upsert_many(conn, [order(1, profile="p-new"), order(2, profile=None)])
    stub = await profiles.get(conn, "p-new")
    assert stub is not None and stub.is_stub and stub.email is None
    assert await events.count(conn) == 2
    metric = await MetricRepository().get(conn, "m-order")
    assert metric is not None  # unknown metrics get a stub too, named by id until synced
    await profiles.upsert_many(conn, [Profile("p-new", email="new@example.com")])
    real = await profiles.get(conn, "p-new")
    assert real is not None and not real.is_stub and real.email == "new@example.com"


async def test_profile_finders(conn: Conn) -> None:
    repo = ProfileRepository()
    await repo.upsert_many(
        conn,
        [
            Profile(
                "p1",
                email="Ann@Example.com",
                phone_number="+15550001",
                external_id="x-1",
                first_name="Ann",
            ),
            Profile("p2", email="bob@example.com", last_name="Builder_%"),
        ],
    )
    assert [p.id for p in await repo.find_by_email(conn, "ann@example.com")] == ["p1"]
    assert [p.id for p in await repo.find_by_phone(conn, "+15550001")] == ["p1"]
    assert [p.id for p in await repo.find_by_external_id(conn, "x-1")] == ["p1"]
    assert [p.id for p in await repo.search(conn, "builder_%")] == ["p2"]
    assert [p.id for p in await repo.search(conn, "_")] == ["p2"]  # wildcards are literal
    assert await repo.ensure_stubs(conn, ["p1", "p3"]) == 1
    assert [p.id for p in await repo.page(conn, limit=2, offset=1)] == ["p2", "p3"]
    with pytest.raises(ValueError, match="no column"):
        await repo.page(conn, order_by="password")


async def test_events_by_profile_by_range_and_counts(conn: Conn) -> None:
    repo = EventRepository()
    await repo.upsert_many(
        conn,
        [order(i, at=T0 + timedelta(hours=i), profile="p1" if i % 2 else "p2") for i in range(6)],
    )
    assert [e.id for e in await repo.find_by_profile(conn, "p1")] == ["e5", "e3", "e1"]
    assert [
        e.id
        for e in await repo.find_by_metric(
            conn, "m-order", T0 + timedelta(hours=1), T0 + timedelta(hours=3)
        )
    ] == ["e1", "e2"]
    assert await repo.count_by_metric(conn) == {"m-order": 6}
    assert await repo.count_by_metric(conn, T0, T0 + timedelta(hours=2)) == {"m-order": 2}
    assert await repo.latest_timestamp(conn) == T0 + timedelta(hours=5)
    streamed = [e.id async for e in repo.iter_range(conn, T0, T0 + timedelta(days=1))]
    assert streamed == [f"e{i}" for i in range(6)]


async def test_latest_timestamp_is_exact_whatever_the_aggregates_say(conn: Conn) -> None:
    """The newest event is sought from the newest aggregate bucket first; stale aggregates,
    aggregates of deleted events and no aggregates at all must all give the true newest."""
    repo, aggs = EventRepository(), AggregateRepository()
    await repo.upsert_many(conn, [order(i, at=T0 + timedelta(days=i)) for i in range(4)])
    assert await repo.latest_timestamp(conn) == T0 + timedelta(days=3)  # no aggregates
    await aggs.rebuild(conn, timezone="UTC")
    assert await repo.latest_timestamp(conn) == T0 + timedelta(days=3)
    assert await repo.latest_timestamp(conn, "m-order") == T0 + timedelta(days=3)
    await repo.upsert_many(conn, [order(9, at=T0 + timedelta(days=9, hours=5))])
    assert await repo.latest_timestamp(conn) == T0 + timedelta(days=9, hours=5)  # stale
    await aggs.rebuild(conn, timezone="UTC")
    await conn.execute("DELETE FROM klaviyo_events WHERE id IN ('e9', 'e3')")
    # The aggregates still have day 9's buckets; the newest event left is day 2's.
    assert await repo.latest_timestamp(conn) == T0 + timedelta(days=2)
    assert await repo.latest_timestamp(conn, "m-other") is None


async def test_campaigns_flows_and_audiences_round_trip(conn: Conn) -> None:
    await CampaignRepository().upsert_many(
        conn,
        [
            Campaign("c1", "Spring sale", "email", audiences={"included": ["l1"]}, send_time=T0),
            Campaign("c2", "Flash", "sms", send_time=T0 + timedelta(days=1)),
        ],
    )
    await CampaignMessageRepository().upsert_many(
        conn, [CampaignMessage("cm1", "c1", subject="Hi", content={"body": "x"})]
    )
    assert [c.id for c in await CampaignRepository().find_by_channel(conn, "email")] == ["c1"]
    assert (await CampaignMessageRepository().find_by(conn, "campaign_id", "c1"))[0].subject == "Hi"
    await FlowRepository().upsert_many(conn, [Flow("f1", "Welcome", trigger_type="List")])
    await FlowActionRepository().upsert_many(
        conn, [FlowAction("a1", "f1", action_type="SEND_EMAIL")]
    )
    await FlowMessageRepository().upsert_many(
        conn, [FlowMessage("fm1", "a1", "f1", name="Welcome 1")]
    )
    assert (await FlowMessageRepository().get(conn, "fm1")) == FlowMessage(
        "fm1", "a1", "f1", name="Welcome 1"
    )
    assert await FlowRepository().delete(conn, "f1")
    assert await FlowMessageRepository().count(conn) == 0  # cascades to actions and messages
    await SegmentRepository().upsert_many(
        conn, [Segment("s1", "VIPs", definition={"rule": 1}, profile_count=3)]
    )
    await FormRepository().upsert_many(conn, [Form("fo1", "Popup", status="live", ab_test=False)])
    assert (await SegmentRepository().get(conn, "s1")).definition == {"rule": 1}  # type: ignore[union-attr]
    assert (await FormRepository().get(conn, "fo1")).status == "live"  # type: ignore[union-attr]


async def test_aggregates_refresh_is_exact_in_the_store_timezone(conn: Conn) -> None:
    events = EventRepository()
    ny = "America/New_York"
    # 23:30 in New York on 1 March is 04:30 UTC on 2 March: it counts for 1 March.
    late = datetime(2026, 3, 2, 4, 30, tzinfo=UTC)
    await events.upsert_many(
        conn, [order(1, value="10", at=late), order(2, value="30", at=late + timedelta(hours=1))]
    )
    aggs = AggregateRepository()
    await aggs.refresh(conn, start=late, end=late + timedelta(hours=1), timezone=ny)
    days = await aggs.series(
        conn, "m-order", "day", datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC)
    )
    assert [(b.bucket_start, b.count, b.sum_value) for b in days] == [
        (datetime(2026, 3, 1, 5, tzinfo=UTC), 1, Decimal("10")),
        (datetime(2026, 3, 2, 5, tzinfo=UTC), 1, Decimal("30")),
    ]
    # A late-arriving event and a deleted one: the refresh recomputes the touched buckets.
    await events.upsert_many(conn, [order(3, value="5", at=late)])
    await events.delete(conn, "e2", late + timedelta(hours=1))
    await aggs.refresh(conn, start=late, end=late + timedelta(hours=1), timezone=ny)
    totals = await aggs.totals(
        conn, ["m-order"], datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC)
    )
    assert totals == {"m-order": (2, Decimal("15"))}
    hours = await aggs.series(
        conn, "m-order", "hour", late - timedelta(minutes=30), late + timedelta(hours=2)
    )
    assert [(b.count, b.min_value, b.max_value, b.unique_profiles) for b in hours] == [
        (2, Decimal("5"), Decimal("10"), 1)
    ]


async def test_sync_state_and_run_history(conn: Conn) -> None:
    state = SyncStateRepository()
    await state.upsert(
        conn, StreamState("events", "2026-03-01", "2026-03-01T10:00:00+00:00", {"pages": 3})
    )
    await state.upsert(conn, StreamState("events", "2026-03-02", None))
    assert len(await state.partitions(conn, "events")) == 2
    got = await state.get(conn, "events", "2026-03-01")
    assert got is not None and got.state == {"pages": 3}
    assert await state.clear(conn, "events") == 2
    runs = SyncRunRepository()
    run_id = await runs.start(conn, "events")
    await runs.quarantine(
        conn, run_id=run_id, stream="events", record_id="e1", reason="no datetime", raw={"id": "e1"}
    )
    await runs.finish(
        conn,
        run_id,
        status="succeeded",
        rows={"klaviyo_events": 10},
        api_calls=3,
        retries=1,
        rate_limited=1,
        errors=0,
        quarantined=1,
    )
    run = await runs.get(conn, run_id)
    assert run is not None and run.status == "succeeded" and run.rows == {"klaviyo_events": 10}
    assert run.duration_ms is not None and run.quarantined == 1
    other = await runs.start(conn, "profiles")
    assert [r.id for r in await runs.recent(conn)] == [other, run_id]
    assert {r.stream for r in await runs.last_per_stream(conn)} == {"events", "profiles"}


async def test_repositories_never_commit(database: Database) -> None:
    async with database.connection() as c:
        async with c.transaction(force_rollback=True):
            await MetricRepository().upsert_many(c, [Metric("m-x", "X")])
        assert await MetricRepository().count(c) == 0
