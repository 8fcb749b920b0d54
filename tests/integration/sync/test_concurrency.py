"""Our own concurrency never deadlocks: many windows creating chunks or partitions at once, then
a full re-sync into compressed chunks (issue 16).

Runs on both back ends: TimescaleDB's 7-day chunks (compressed by the compression policy before
the re-sync) and plain PostgreSQL's monthly partitions. Deadlocks are counted by the server
(pg_stat_database.deadlocks of the test's own database) and by the pool, which logs every
transaction it retries; a deadlock absorbed by a retry is still a failure here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

import psycopg
import pytest

from klaviyo_analytics.db import maintenance
from tests.fixtures.database import settle_timescaledb_jobs, uses_timescaledb
from tests.fixtures.sandbox import SMALL_STORE, SandboxFactory
from tests.fixtures.sync import fingerprint, sandbox_stats, sync_service

# About 17 weeks: 18 weekly chunks (or 4 monthly partitions), none of which exists before the
# backfill; 16 one-day windows in flight create them at the same moments.
STORE = replace(SMALL_STORE, profiles=300, days=120)
CONCURRENCY = 16
RULES = maintenance.retention_rules(
    raw_responses_days=3650, events_months=240, aggregates_months=240, predictions_months=240
)


def server_deadlocks(conninfo: str) -> int:
    """Return the deadlocks the server has counted in this database, once every client session
    of it has ended (a backend flushes its statistics before it leaves pg_stat_activity)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        deadline = time.monotonic() + 30
        while True:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
            ).fetchone()
            if row == (0,) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def logged_deadlocks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "deadlock detected" in r.getMessage()]


def compressed_chunks(conninfo: str) -> int:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT count(*) FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'klaviyo_events' AND is_compressed"
        ).fetchone()
    assert row is not None
    return int(row[0])


def time_slices(conninfo: str) -> int:
    """Return how many chunks (TimescaleDB) or monthly partitions hold events."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT tableoid) FROM klaviyo_events"  # the chunk or partition
        ).fetchone()
    assert row is not None
    return int(row[0])


def tamper(conninfo: str) -> int:
    """Change a fifth of the stored events and delete another tenth, across every chunk, so
    the full re-sync has to rewrite rows in every (soon compressed) chunk; return how many."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        changed = conn.execute(
            "UPDATE klaviyo_events SET value = coalesce(value, 0) + 1000,"
            " properties = properties || '{\"tampered\": true}'"
            " WHERE abs(hashtext(id)) % 5 = 0"
        ).rowcount
        deleted = conn.execute(
            "DELETE FROM klaviyo_events WHERE abs(hashtext(id)) % 10 = 1"
        ).rowcount
    return changed + deleted


async def test_concurrent_backfill_compression_and_full_resync_never_deadlock(
    db_conninfo: str, make_sandbox: SandboxFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="klaviyo_analytics")
    timescale = uses_timescaledb(db_conninfo)
    server = make_sandbox(store=STORE)
    truth = sandbox_stats(server)
    before = server_deadlocks(db_conninfo)

    async with sync_service(db_conninfo, server, concurrency=CONCURRENCY) as service:
        first = await service.sync_all()
    assert all(r.status == "succeeded" for r in first), [(r.stream, r.status) for r in first]
    backfill_deadlocks = server_deadlocks(db_conninfo) - before
    synced = fingerprint(db_conninfo)
    assert synced["klaviyo_events"][0] == truth["events"]
    assert synced["klaviyo_profiles"][0] == truth["profiles"]
    slices = time_slices(db_conninfo)
    assert slices >= (17 if timescale else 4)

    assert tamper(db_conninfo) > truth["events"] // 5
    if timescale:
        # The compression policy (chunks older than 90 days; the store ends 2026-07-01) run as
        # the maintenance command sets it, with CALL run_job (see tests/integration/db/
        # test_timescaledb.py for why not TimescaleDB's own scheduler).
        await maintenance.run_maintenance(db_conninfo, RULES)
        settle_timescaledb_jobs(db_conninfo)  # the policy's own first run, in the background
        with psycopg.connect(db_conninfo, autocommit=True) as conn:
            row = conn.execute(
                "SELECT job_id FROM timescaledb_information.jobs"
                " WHERE proc_name = 'policy_compression' AND hypertable_name = 'klaviyo_events'"
            ).fetchone()
            assert row is not None
            conn.execute("CALL run_job(%s)", (row[0],))
        assert compressed_chunks(db_conninfo) >= slices

    # Counted from here: maintenance's reports may lose a deadlock to TimescaleDB's own
    # background job (and read again, see db/maintenance.py); the syncs' writers must not.
    before_resync = server_deadlocks(db_conninfo)
    async with sync_service(db_conninfo, server, concurrency=CONCURRENCY) as service:
        again = await service.sync_all(full=True)
    assert all(r.status == "succeeded" for r in again), [(r.stream, r.status) for r in again]
    resync_deadlocks = server_deadlocks(db_conninfo) - before_resync

    assert fingerprint(db_conninfo) == synced  # every tampered row put right, nothing else
    if timescale:
        assert compressed_chunks(db_conninfo) >= slices  # rewritten in place, still compressed
    assert (backfill_deadlocks, resync_deadlocks) == (0, 0), logged_deadlocks(caplog)
    assert logged_deadlocks(caplog) == []


def test_the_deadlock_count_sees_a_deadlock(db_conninfo: str) -> None:
    """The counter the test above relies on moves when two sessions deadlock here."""
    before = server_deadlocks(db_conninfo)
    with (
        psycopg.connect(db_conninfo, autocommit=True) as setup,
        psycopg.connect(db_conninfo) as a,
        psycopg.connect(db_conninfo) as b,
    ):
        setup.execute("INSERT INTO klaviyo_metrics (id, name) VALUES ('x', 'x'), ('y', 'y')")
        a.execute("UPDATE klaviyo_metrics SET name = 'a' WHERE id = 'x'")
        b.execute("UPDATE klaviyo_metrics SET name = 'b' WHERE id = 'y'")

        async def cross() -> list[BaseException | None]:
            async def update(conn: psycopg.Connection[tuple[object, ...]], key: str) -> None:
                await asyncio.to_thread(
                    conn.execute, "UPDATE klaviyo_metrics SET name = 'z' WHERE id = %s", (key,)
                )

            results = await asyncio.gather(update(a, "y"), update(b, "x"), return_exceptions=True)
            return [r if isinstance(r, BaseException) else None for r in results]

        outcomes = asyncio.run(cross())
        a.rollback()
        b.rollback()
    assert sum(isinstance(o, psycopg.errors.DeadlockDetected) for o in outcomes) == 1
    assert server_deadlocks(db_conninfo) - before == 1
