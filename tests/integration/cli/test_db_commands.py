"""The database commands as a user runs them: real processes, real exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

from klaviyo_analytics.db.embedded import EmbeddedPostgres
from tests.fixtures.database import PgServer, uses_timescaledb


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_URL"))}
    return subprocess.run(
        [sys.executable, "-m", "klaviyo_analytics.cli", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_migrate_applies_then_reports_up_to_date(
    pg_server: PgServer, empty_db_conninfo: str
) -> None:
    env = {"DATABASE_URL": empty_db_conninfo}
    first = run_cli("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_roles_and_entities.sql" in first.stdout
    second = run_cli("migrate", env=env)
    assert second.returncode == 0 and "up to date" in second.stdout
    status = run_cli("migrate", "status", env=env)
    assert "0004_sync.sql" in status.stdout and "pending" not in status.stdout


def test_unreachable_server_exits_nonzero_naming_the_target_not_the_password() -> None:
    result = run_cli(
        "migrate",
        env={
            "DB_HOST": "127.0.0.1",
            "DB_PORT": "1",
            "DB_USER": "shopper",
            "DB_NAME": "shopdb",
            "DB_PASSWORD": "pw-that-must-not-leak",
            "DB_MAX_RETRIES": "1",
            "DB_INITIAL_RETRY_DELAY": "10",
        },
    )
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "127.0.0.1:1" in output and "shopdb" in output and "shopper" in output
    assert "after 2 attempts" in output
    assert "pw-that-must-not-leak" not in output
    assert "Traceback" not in output


def test_invalid_setting_exits_with_status_2_and_names_the_variable() -> None:
    result = run_cli("migrate", env={"DB_MIN_CONNECTIONS": "80", "DB_MAX_CONNECTIONS": "10"})
    assert result.returncode == 2
    assert "DB_MIN_CONNECTIONS (80) must not exceed DB_MAX_CONNECTIONS (10)" in result.stderr
    assert "Traceback" not in result.stderr


def test_maintenance_drops_expired_events_on_either_back_end(db_conninfo: str) -> None:
    # Plain PostgreSQL drops the expired month's partition; TimescaleDB's retention policy,
    # run at once by maintenance, drops the expired chunk. Either way the old event is gone.
    with psycopg.connect(db_conninfo, autocommit=True) as conn:
        conn.execute("INSERT INTO klaviyo_metrics (id, name) VALUES ('m', 'Placed Order')")
        conn.execute(
            "INSERT INTO klaviyo_events (id, timestamp, metric_id) VALUES"
            " ('old', now() - interval '13 months', 'm'), ('new', now() - interval '1 day', 'm')"
        )
    result = run_cli("maintenance", env={"DATABASE_URL": db_conninfo})
    assert result.returncode == 0, result.stderr
    unit = "chunks" if uses_timescaledb(db_conninfo) else "partitions"
    assert f"expired {unit} dropped from klaviyo_events: 1" in result.stdout
    assert "klaviyo_events" in result.stdout
    with psycopg.connect(db_conninfo) as conn:
        assert conn.execute("SELECT id FROM klaviyo_events").fetchall() == [("new",)]


def test_demo_on_a_fresh_home_syncs_the_sandbox_and_a_second_run_is_incremental(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    env = {"KLAVIYO_ANALYTICS_HOME": str(home), "LOG_LEVEL": "WARNING"}
    result = run_cli("demo", "--exit", "--profiles", "300", "--days", "7", env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "admin key: ka_" in result.stdout
    assert (home / "pgdata" / "PG_VERSION").exists()
    assert not (home / "pgdata" / "postmaster.pid").exists()  # stopped cleanly on exit
    with (
        EmbeddedPostgres(home / "pgdata") as pg,
        psycopg.connect(pg.conninfo("klaviyo_analytics")) as conn,
    ):
        events = conn.execute("SELECT count(*) FROM klaviyo_events").fetchone()
        facts = conn.execute("SELECT count(*) FROM fact_revenue").fetchone()
        runs = conn.execute("SELECT count(*) FROM sync_runs WHERE status = 'succeeded'").fetchone()
    assert events and events[0] > 1000 and facts and facts[0] > 0 and runs and runs[0] >= 9
    again = run_cli("demo", "--exit", env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    with (
        EmbeddedPostgres(home / "pgdata") as pg,
        psycopg.connect(pg.conninfo("klaviyo_analytics")) as conn,
    ):
        events_after = conn.execute("SELECT count(*) FROM klaviyo_events").fetchone()
        keys = conn.execute(
            "SELECT count(*) FROM api_keys WHERE name = 'demo' AND revoked_at IS NULL"
        ).fetchone()
    assert events_after is not None and events_after[0] >= events[0]  # the same store, grown
    assert keys == (1,)  # each run revokes the previous demo key
