"""The sync and the scheduler as separate processes: SIGKILL at random moments, and the
scheduler's lock across two processes."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace

import psycopg

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


def test_sync_killed_at_random_moments_ends_identical_to_an_undisturbed_sync(
    pg_server: PgServer, db_conninfo: str, make_sandbox: SandboxFactory
) -> None:
    # About 180 pages at 80 ms, two at a time: each run lives long enough to be killed.
    server = make_sandbox(store=replace(SMALL_STORE, days=30), faults=FaultOptions(latency_ms=80))
    clean = pg_server.create_database(
        f"{db_conninfo.split('dbname=')[-1].split()[0]}_clean", template=None
    )
    try:
        finish(start(["sync", "events"], cli_env(clean, server, SYNC_CONCURRENCY="2")))
        expected = {t: v for t, v in fingerprint(clean).items() if t in EVENT_TABLES}
    finally:
        pg_server.drop_database(clean.split("dbname=")[-1].split()[0])
    rng = random.Random(20261122)
    kills = 0
    for _ in range(4):
        proc = start(["sync", "events"], cli_env(db_conninfo, server, SYNC_CONCURRENCY="2"))
        time.sleep(rng.uniform(1.5, 3.0))
        if proc.poll() is None:
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
    pg_server: PgServer, db_conninfo: str, make_sandbox: SandboxFactory
) -> None:
    if pg_server.embedded is None:
        import pytest

        pytest.skip("needs the embedded server, which the test can restart (DATABASE_URL is set)")
    server = make_sandbox(store=replace(SMALL_STORE, days=30), faults=FaultOptions(latency_ms=60))
    env = cli_env(
        db_conninfo, server, SYNC_CONCURRENCY="4", DB_MAX_RETRIES="8", DB_MAX_RETRY_DELAY="2000"
    )
    proc = start(["sync", "events"], env)
    deadline = time.monotonic() + 60
    with psycopg.connect(db_conninfo, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT count(*) FROM klaviyo_events").fetchone()
            if row and row[0] > 500:
                break
            time.sleep(0.1)
    pg_server.embedded.restart()
    out = finish(proc)
    assert "transient database error" in out  # the restart cut connections and was retried
    with psycopg.connect(db_conninfo) as conn:
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
