"""The sync and the scheduler as separate processes: SIGKILL at random moments, and the
scheduler's lock across two processes."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from klaviyo_analytics.db.embedded import EmbeddedPostgres
from klaviyo_analytics.db.migrate import migrate
from klaviyo_analytics.sandbox.config import FaultOptions
from klaviyo_analytics.sandbox.server import SandboxServer
from tests.fixtures.database import PgServer
from tests.fixtures.sandbox import SMALL_STORE, SandboxFactory
from tests.fixtures.sync import fingerprint

EVENT_TABLES = (
    "klaviyo_events",
    "klaviyo_aggregated_metrics",
    "klaviyo_profiles",
    "klaviyo_metrics",
)


def cli_env(conninfo: str, server: SandboxServer, **extra: str) -> dict[str, str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_URL", "KLAVIYO_"))
    }
    return {
        **base,
        "DATABASE_URL": conninfo,
        "KLAVIYO_API_KEY": server.api_key,
        "KLAVIYO_BASE_URL": server.base_url,
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "klaviyo_analytics.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 180) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


def stored_events(conninfo: str) -> int:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM klaviyo_events").fetchone()
    return int(row[0]) if row else 0


def wait_for_events(conninfo: str, proc: subprocess.Popen[str], at_least: int) -> bool:
    """Wait until the database holds `at_least` events; False if the process ended first."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if stored_events(conninfo) >= at_least:
            return proc.poll() is None
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    raise AssertionError(f"the sync never stored {at_least} events")


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL server of this test's own, which it may restart without harming others."""
    with EmbeddedPostgres(tmp_path / "pgdata") as server:
        yield server


def test_sync_killed_at_random_moments_ends_identical_to_an_undisturbed_sync(
    pg_server: PgServer, db_conninfo: str, make_sandbox: SandboxFactory
) -> None:
    # About 180 pages at 80 ms, two at a time: each run lives long enough to be killed.
    server = make_sandbox(store=replace(SMALL_STORE, days=30), faults=FaultOptions(latency_ms=80))
    clean_name = f"{conninfo_to_dict(db_conninfo)['dbname']}_clean"
    clean = pg_server.create_database(clean_name, template=None)
    try:
        finish(start(["sync", "events"], cli_env(clean, server, SYNC_CONCURRENCY="2")))
        expected = {t: v for t, v in fingerprint(clean).items() if t in EVENT_TABLES}
    finally:
        pg_server.drop_database(clean_name)
    total = server.generator.count_events()
    rng = random.Random(20261122)
    kills = 0
    for _ in range(4):
        proc = start(["sync", "events"], cli_env(db_conninfo, server, SYNC_CONCURRENCY="2"))
        # Kill at a random point of progress (never by the clock): once a random share more of
        # the events than the last run left behind is stored.
        done = stored_events(db_conninfo)
        target = done + max(1, int((total - done) * rng.uniform(0.1, 0.4)))
        if wait_for_events(db_conninfo, proc, target):
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate(timeout=60)
    assert kills >= 2, "the sync finished before it could be killed; slow the sandbox down"
    finish(start(["sync", "events"], cli_env(db_conninfo, server, SYNC_CONCURRENCY="2")))
    got = {t: v for t, v in fingerprint(db_conninfo).items() if t in EVENT_TABLES}
    assert got == expected
    with psycopg.connect(db_conninfo) as conn:
        unfinished = conn.execute(
            "SELECT count(*) FROM sync_state WHERE stream = 'events' AND NOT (state->>'done')::boolean"
        ).fetchone()
    assert unfinished == (0,)


def test_the_scheduler_lock_holds_across_two_processes(
    db_conninfo: str, make_sandbox: SandboxFactory
) -> None:
    server = make_sandbox(store=replace(SMALL_STORE, days=7), faults=FaultOptions(latency_ms=120))
    env = cli_env(db_conninfo, server, SYNC_CONCURRENCY="2")
    first = start(["scheduler", "--run-now", "events"], env)
    deadline = time.monotonic() + 60
    with psycopg.connect(db_conninfo, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM job_runs WHERE job = 'events' AND status = 'running'"
            ).fetchone()
            if row and row[0]:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the first scheduler never started its run")
    second_out = finish(start(["scheduler", "--run-now", "events"], env))
    first_out = finish(first)
    assert "job events: skipped" in second_out
    assert "job events: succeeded" in first_out
    with psycopg.connect(db_conninfo) as conn:
        statuses = sorted(
            r[0] for r in conn.execute("SELECT status FROM job_runs WHERE job = 'events'")
        )
        event_runs = conn.execute(
            "SELECT count(*) FROM sync_runs WHERE stream = 'events'"
        ).fetchone()
    assert statuses == ["skipped", "succeeded"]
    assert event_runs == (1,)


def test_sync_survives_a_database_restart_mid_run(
    own_server: EmbeddedPostgres, make_sandbox: SandboxFactory
) -> None:
    conninfo = own_server.conninfo("postgres")
    asyncio.run(migrate(conninfo))
    server = make_sandbox(store=replace(SMALL_STORE, days=30), faults=FaultOptions(latency_ms=60))
    env = cli_env(
        conninfo, server, SYNC_CONCURRENCY="4", DB_MAX_RETRIES="8", DB_MAX_RETRY_DELAY="2000"
    )
    proc = start(["sync", "events"], env)
    assert wait_for_events(conninfo, proc, 500), "the sync finished before the restart"
    own_server.restart()
    out = finish(proc)
    assert "transient database error" in out  # the restart cut connections and was retried
    with psycopg.connect(conninfo) as conn:
        stored = conn.execute("SELECT count(*) FROM klaviyo_events").fetchone()
        mismatches = conn.execute(
            "SELECT count(*) FROM (SELECT metric_id, date_trunc('day', \"timestamp\", 'America/New_York') b,"
            " count(*) n FROM klaviyo_events GROUP BY 1, 2) raw FULL JOIN (SELECT metric_id, bucket_start b, count n"
            " FROM klaviyo_aggregated_metrics WHERE bucket_size = 'day') agg USING (metric_id, b)"
            " WHERE raw.n IS DISTINCT FROM agg.n"
        ).fetchone()
    truth = server.generator.count_events()
    assert stored == (truth,)
    assert mismatches == (0,)
