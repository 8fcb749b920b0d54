"""The sync against the sandbox over HTTP and a real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import httpx
import psycopg
import pytest

from klaviyo_analytics.db.pool import Conn, StatementTimeoutError
from klaviyo_analytics.db.repos.events import Event, EventRepository
from klaviyo_analytics.klaviyo import KlaviyoAuthenticationError
from klaviyo_analytics.sandbox.config import FaultOptions
from klaviyo_analytics.sandbox.server import SandboxServer
from klaviyo_analytics.sync.runner import SyncFailedError
from tests.fixtures.database import uses_timescaledb
from tests.fixtures.sandbox import SMALL_STORE, SandboxFactory
from tests.fixtures.sync import fingerprint, sandbox_stats, sync_service


def scalar(conninfo: str, query: str) -> object:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]


async def test_full_sync_equals_the_sandboxs_own_counts_and_a_second_sync_adds_nothing(
    db_conninfo: str, sandbox: SandboxServer
) -> None:
    truth = sandbox_stats(sandbox)
    async with sync_service(db_conninfo, sandbox) as service:
        first = await service.sync_all()
        assert {r.stream for r in first} >= {"metrics", "events", "profiles", "campaigns", "flows"}
        assert all(r.status == "succeeded" for r in first)
        second = await service.sync_all()
    with psycopg.connect(db_conninfo) as conn:
        by_metric = dict(
            conn.execute("SELECT metric_id, count(*) FROM klaviyo_events GROUP BY 1").fetchall()
        )
        counts = {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in (  # type: ignore[index]
                "klaviyo_metrics",
                "klaviyo_profiles",
                "klaviyo_lists",
                "klaviyo_segments",
                "klaviyo_forms",
                "klaviyo_flows",
                "klaviyo_flow_actions",
                "klaviyo_flow_messages",
                "klaviyo_campaign_messages",
                "klaviyo_templates",
            )
        }
        campaigns = dict(
            conn.execute("SELECT channel, count(*) FROM klaviyo_campaigns GROUP BY 1").fetchall()
        )
        stubs = conn.execute("SELECT count(*) FROM klaviyo_profiles WHERE is_stub").fetchone()
    assert by_metric == {m: n for m, n in truth["events_by_metric"].items() if n}
    assert counts == {
        "klaviyo_metrics": truth["metrics"],
        "klaviyo_profiles": truth["profiles"],
        "klaviyo_lists": truth["lists"],
        "klaviyo_segments": truth["segments"],
        "klaviyo_forms": truth["forms"],
        "klaviyo_flows": truth["flows"],
        "klaviyo_flow_actions": truth["flow_actions"],
        "klaviyo_flow_messages": truth["flow_messages"],
        "klaviyo_campaign_messages": truth["campaign_messages"],
        "klaviyo_templates": len(sandbox.generator.catalog.templates),
    }
    assert campaigns == {k: v for k, v in truth["campaigns"].items() if v}
    assert stubs == (0,)  # profiles sync before events, so every event's profile is real
    assert all(sum(r.rows.values()) == 0 for r in second), [(r.stream, r.rows) for r in second]


async def test_runs_are_recorded_with_counts_and_calls(
    db_conninfo: str, sandbox: SandboxServer
) -> None:
    async with sync_service(db_conninfo, sandbox) as service:
        await service.sync_all()
    with psycopg.connect(db_conninfo) as conn:
        rows = conn.execute(
            "SELECT stream, status, rows, api_calls, duration_ms FROM sync_runs WHERE stream = 'events'"
        ).fetchall()
    assert len(rows) == 1
    _stream, status, written, calls, duration = rows[0]
    assert status == "succeeded" and written["klaviyo_events"] == sandbox_stats(sandbox)["events"]
    assert calls > 0 and duration is not None


async def test_aggregates_equal_the_raw_events_after_sync(
    db_conninfo: str, sandbox: SandboxServer
) -> None:
    async with sync_service(db_conninfo, sandbox) as service:
        await service.sync_all()
        zone = await service.timezone()
    with psycopg.connect(db_conninfo) as conn:
        mismatches = conn.execute(
            """
            WITH raw AS (
                SELECT metric_id, date_trunc('day', "timestamp", %(z)s) AS b, count(*) AS n,
                       coalesce(sum(value), 0) AS v
                FROM klaviyo_events GROUP BY 1, 2
            )
            SELECT count(*) FROM raw FULL JOIN (
                SELECT metric_id, bucket_start AS b, count AS n, sum_value AS v
                FROM klaviyo_aggregated_metrics WHERE bucket_size = 'day'
            ) agg USING (metric_id, b)
            WHERE raw.n IS DISTINCT FROM agg.n OR raw.v IS DISTINCT FROM agg.v
            """,
            {"z": zone},
        ).fetchone()
    assert zone == "America/New_York"  # the account's zone, from the accounts endpoint
    assert mismatches == (0,)


async def test_an_invalid_key_fails_before_any_work(
    db_conninfo: str, sandbox: SandboxServer
) -> None:
    wrong = replace(sandbox.config, api_key="pk_wrong")
    fake = SandboxServer.__new__(SandboxServer)
    fake.__dict__.update(sandbox.__dict__)
    fake.config = wrong
    async with sync_service(db_conninfo, fake) as service:
        with pytest.raises(KlaviyoAuthenticationError, match="401"):
            await service.sync_all()
    assert scalar(db_conninfo, "SELECT count(*) FROM sync_runs") == 0


async def test_live_sandbox_incremental_sync_picks_up_exactly_the_new_events(
    db_conninfo: str, make_sandbox: SandboxFactory
) -> None:
    server = make_sandbox(live=True)
    async with sync_service(db_conninfo, server) as service:
        await service.sync_all()
        before = scalar(db_conninfo, "SELECT count(*) FROM klaviyo_events")
        assert before == sandbox_stats(server)["events"]
        async with httpx.AsyncClient() as http:
            await http.post(f"{server.base_url}/admin/clock", json={"advance_seconds": 6 * 3600})
        truth = sandbox_stats(server)["events"]
        assert truth > before
        result = await service.run("events")
    assert scalar(db_conninfo, "SELECT count(*) FROM klaviyo_events") == truth
    assert result.rows["klaviyo_events"] == truth - before


async def test_same_second_events_at_a_window_boundary_all_arrive(
    db_conninfo: str, sandbox: SandboxServer
) -> None:
    headers = {"Authorization": f"Klaviyo-API-Key {sandbox.api_key}", "revision": "2026-07-15"}
    async with httpx.AsyncClient(base_url=sandbox.base_url, headers=headers) as http:
        response = await http.get("/api/events", params={"page[size]": "1000", "sort": "datetime"})
    page = response.json()["data"]
    seconds = [e["attributes"]["datetime"] for e in page]
    shared = next(s for s in seconds if seconds.count(s) > 1)
    boundary = datetime.fromisoformat(shared)
    async with sync_service(db_conninfo, sandbox) as service:
        await service.run("metrics")
        # The first run stops exactly at the shared second (exclusive), the next crosses it.
        await service.run("events", since=boundary - timedelta(days=1), until=boundary)
        assert (
            scalar(
                db_conninfo, f"SELECT count(*) FROM klaviyo_events WHERE \"timestamp\" = '{shared}'"
            )
            == 0
        )
        await service.run("events", until=boundary + timedelta(hours=1))
    stored = scalar(
        db_conninfo, f"SELECT count(*) FROM klaviyo_events WHERE \"timestamp\" = '{shared}'"
    )
    assert stored == seconds.count(shared) >= 2


async def test_fault_storm_ends_with_the_same_data_as_a_clean_sync(
    db_conninfo: str, make_sandbox: SandboxFactory
) -> None:
    store = replace(SMALL_STORE, profiles=300, days=10)
    clean_server = make_sandbox(store=store)
    stormy = make_sandbox(
        store=store,
        faults=FaultOptions(
            p429=0.05,
            p500=0.05,
            p503=0.03,
            p_malformed=0.03,
            p_truncated=0.02,
            p_reset=0.03,
            seed=11,
        ),
    )
    async with sync_service(db_conninfo, stormy) as service:
        results = await service.sync_all()
    assert sum(r.retries for r in results) > 0
    injected = sandbox_stats(stormy)["faults_injected"]
    assert sum(injected.values()) > 0
    async with sync_service(db_conninfo, clean_server) as service:
        again = await service.sync_all()
    # Syncing the clean twin of the same store into the same database changes nothing.
    assert all(sum(r.rows.values()) == 0 for r in again), [(r.stream, r.rows) for r in again]
    assert fingerprint(db_conninfo)["klaviyo_events"][0] == sandbox_stats(clean_server)["events"]


async def test_archiving_keeps_every_fetched_page_beside_its_rows(
    db_conninfo: str, sandbox: SandboxServer
) -> None:
    async with sync_service(db_conninfo, sandbox) as service:
        service.options = replace(
            service.options,
            archive_raw=True,
            events=replace(service.options.events, archive_raw=True),
        )
        metrics = await service.run("metrics")
        events = await service.run("events")
    with psycopg.connect(db_conninfo) as conn:
        pages = dict(
            conn.execute("SELECT endpoint, count(*) FROM raw_api_responses GROUP BY 1").fetchall()
        )
        archived = conn.execute(
            "SELECT coalesce(sum(jsonb_array_length(body -> 'data')), 0) FROM raw_api_responses"
            " WHERE endpoint = 'get_events'"
        ).fetchone()
    assert pages == {"metrics": metrics.pages, "get_events": events.pages}
    assert archived == (events.fetched,)


async def test_a_backfill_of_many_windows_refreshes_its_whole_range_once(
    db_conninfo: str, sandbox: SandboxServer
) -> None:
    # Each window used to be refreshed on its own, so every date and week bucket was recomputed
    # once per neighbouring window; the refresh took most of a backfill's time.
    calls: list[tuple[datetime, datetime]] = []

    async def record(conn: object, lo: datetime, hi: datetime, zone: str) -> None:
        calls.append((lo, hi))

    async with sync_service(db_conninfo, sandbox) as service:
        service.after_events.append(record)
        await service.sync_all()
    first = scalar(db_conninfo, 'SELECT min("timestamp") FROM klaviyo_events')
    last = scalar(db_conninfo, 'SELECT max("timestamp") FROM klaviyo_events')
    assert isinstance(first, datetime) and isinstance(last, datetime)
    assert last - first > timedelta(days=14)  # a backfill of at least 14 one-day windows
    assert calls == [(first, last)]


async def test_the_refresh_runs_its_hooks_at_once_each_in_a_transaction_of_its_own(
    db_conninfo: str, sandbox: SandboxServer
) -> None:
    # The user waits for the refresh after a backfill: one hook after another left a core idle.
    # `first` finishes only once `second` has started, so run one after another they would
    # time out.
    started = asyncio.Event()
    backends: dict[str, int] = {}

    async def first(conn: Conn, lo: datetime, hi: datetime, zone: str) -> None:
        backends["first"] = conn.info.backend_pid
        await asyncio.wait_for(started.wait(), timeout=30)

    async def second(conn: Conn, lo: datetime, hi: datetime, zone: str) -> None:
        backends["second"] = conn.info.backend_pid
        started.set()

    async with sync_service(db_conninfo, sandbox) as service:
        service.after_events[:] = [first, second]
        await service.sync_all()
    assert backends["first"] != backends["second"]


async def test_a_failed_refresh_leaves_its_range_for_the_next_run(
    db_conninfo: str, sandbox: SandboxServer
) -> None:
    calls: list[tuple[datetime, datetime]] = []

    async def broken(conn: Conn, lo: datetime, hi: datetime, zone: str) -> None:
        # What a refresh of a huge range on a slow server meets.
        raise StatementTimeoutError("the refresh broke")

    async def record(conn: Conn, lo: datetime, hi: datetime, zone: str) -> None:
        calls.append((lo, hi))

    async with sync_service(db_conninfo, sandbox) as service:
        service.after_events[:] = [record, broken]
        with pytest.raises(SyncFailedError, match="the refresh broke"):
            await service.sync_all()
    first = scalar(db_conninfo, 'SELECT min("timestamp") FROM klaviyo_events')
    last = scalar(db_conninfo, 'SELECT max("timestamp") FROM klaviyo_events')
    assert calls == [(first, last)]
    # The next run finds the backfill's windows still dirty and refreshes all of them again,
    # though it fetches almost nothing new.
    calls.clear()
    async with sync_service(db_conninfo, sandbox) as service:
        service.after_events[:] = [record]
        await service.sync_all()
    assert len(calls) == 1 and calls[0][0] == first and calls[0][1] >= last


async def test_partitions_are_ensured_once_per_month_on_plain_postgresql(
    db_conninfo: str, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every page's stubs are created with its partitions, in one transaction; on plain
    PostgreSQL a page whose months this run already ensured skips `ka_ensure_partitions`
    (TimescaleDB's chunks are not months: there every page asks)."""
    calls: list[tuple[datetime, datetime]] = []
    original = EventRepository.ensure_partitions

    async def counted(self: EventRepository, conn: Conn, start: datetime, end: datetime) -> int:
        calls.append((start, end))
        return await original(self, conn, start, end)

    monkeypatch.setattr(EventRepository, "ensure_partitions", counted)
    truth = sandbox_stats(sandbox)
    async with sync_service(db_conninfo, sandbox, concurrency=4) as service:
        results = {r.stream: r for r in await service.sync_all()}
    events = results["events"]
    assert events.status == "succeeded"
    assert fingerprint(db_conninfo)["klaviyo_events"][0] == truth["events"]
    months = {(s.year, s.month) for s, _ in calls} | {(e.year, e.month) for _, e in calls}
    if uses_timescaledb(db_conninfo):
        assert 0 < len(calls) <= events.pages
    else:
        # Workers that miss the same new month at once each ask: at most one call per worker
        # and month, far fewer than one a page.
        assert len(calls) <= 4 * len(months) < events.pages


async def test_events_synced_before_profiles_get_stubs_looked_for_once_per_run(
    db_conninfo: str, sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events first (no profiles or metrics stored yet): every profile and metric they name
    gets a stub row, and each id is sent to `ensure_references` by the first page that names
    it in this run, not by every page (the foreign keys would refuse a page whose stub was
    skipped)."""
    sent: list[int] = []
    original = EventRepository.ensure_references

    async def counted(self: EventRepository, conn: Conn, events: Sequence[Event]) -> None:
        sent.append(len(events))
        await original(self, conn, events)

    monkeypatch.setattr(EventRepository, "ensure_references", counted)
    truth = sandbox_stats(sandbox)
    async with sync_service(db_conninfo, sandbox, concurrency=4) as service:
        results = {r.stream: r for r in await service.run_stream("events")}
    assert "profiles" not in results, results.keys()
    result = results["events"]
    assert result.status == "succeeded"
    assert fingerprint(db_conninfo)["klaviyo_events"][0] == truth["events"] == result.fetched
    named_profiles = scalar(db_conninfo, "SELECT count(DISTINCT profile_id) FROM klaviyo_events")
    assert scalar(db_conninfo, "SELECT count(*) FROM klaviyo_profiles WHERE is_stub") == (
        named_profiles
    )
    assert scalar(db_conninfo, "SELECT count(*) FROM klaviyo_metrics") == scalar(
        db_conninfo, "SELECT count(DISTINCT metric_id) FROM klaviyo_events"
    )
    assert 0 < sum(sent) < result.fetched
