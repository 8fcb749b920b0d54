"""The database commands as a user runs them: real processes, real exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

from tests.fixtures.database import PgServer


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


def test_maintenance_deletes_expired_rows_without_timescaledb(db_conninfo: str) -> None:
    with psycopg.connect(db_conninfo, autocommit=True) as conn:
        conn.execute("INSERT INTO klaviyo_metrics (id, name) VALUES ('m', 'Placed Order')")
        conn.execute(
            "INSERT INTO klaviyo_events (id, timestamp, metric_id) VALUES"
            " ('old', now() - interval '13 months', 'm'), ('new', now() - interval '1 day', 'm')"
        )
    result = run_cli("maintenance", env={"DATABASE_URL": db_conninfo})
    assert result.returncode == 0, result.stderr
    assert "expired rows deleted from klaviyo_events: 1" in result.stdout
    assert "klaviyo_events" in result.stdout
    with psycopg.connect(db_conninfo) as conn:
        assert conn.execute("SELECT id FROM klaviyo_events").fetchall() == [("new",)]


def test_demo_on_a_fresh_home_starts_the_embedded_database_and_stops_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = run_cli("demo", "--exit", env={"KLAVIYO_ANALYTICS_HOME": str(home)})
    assert result.returncode == 0, result.stderr
    assert "database ready" in result.stdout
    assert (home / "pgdata" / "PG_VERSION").exists()
    assert not (home / "pgdata" / "postmaster.pid").exists()  # stopped cleanly on exit
    again = run_cli("demo", "--exit", env={"KLAVIYO_ANALYTICS_HOME": str(home)})
    assert again.returncode == 0 and "0 applied now" in again.stdout
