"""The pool: transient-error retries, statement timeout, clear connection errors, metrics."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import psycopg
import pytest

from klaviyo_analytics.db.pool import Conn, Database, QueryError, StatementTimeoutError
from klaviyo_analytics.errors import DatabaseUnavailableError
from klaviyo_analytics.retry import RetryPolicy
from tests.fixtures.database import instant_sleep


async def backend_pid(conn: Conn) -> int:
    cur = await conn.execute("SELECT pg_backend_pid() AS pid")
    row = await cur.fetchone()
    assert row is not None
    return int(row["pid"])


async def test_a_query_whose_connection_is_killed_is_retried_and_succeeds(
    database: Database, db_conninfo: str
) -> None:
    attempts: list[int] = []
    pid_seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def work(conn: Conn) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            pid_seen.set_result(await backend_pid(conn))
            await conn.execute("SELECT pg_sleep(5)")
        cur = await conn.execute("SELECT 'done' AS r")
        row = await cur.fetchone()
        assert row is not None
        return str(row["r"])

    async def killer() -> None:
        pid = await pid_seen
        await asyncio.sleep(0.2)
        async with await psycopg.AsyncConnection.connect(db_conninfo, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

    result, _ = await asyncio.gather(database.run(work), killer())
    assert result == "done"
    assert len(attempts) == 2
    assert database.stats.retries == 1


async def test_statement_timeout_fires_and_is_not_retried(db_conninfo: str) -> None:
    calls = 0

    async def slow(conn: Conn) -> None:
        nonlocal calls
        calls += 1
        await conn.execute("SELECT pg_sleep(3)")

    async with Database(db_conninfo, min_size=1, max_size=2, statement_timeout_ms=200) as db:
        with pytest.raises(StatementTimeoutError, match="200 ms statement timeout"):
            await db.run(slow)
        assert calls == 1
        assert db.metrics().statement_timeouts == 1


async def test_an_error_in_the_statement_is_raised_at_once(database: Database) -> None:
    async def broken(conn: Conn) -> None:
        await conn.execute("SELECT * FROM no_such_table")

    with pytest.raises(QueryError, match="no_such_table") as refused:
        await database.run(broken)
    assert refused.value.sqlstate == "42P01"  # undefined table
    assert database.stats.retries == 0


async def test_an_unreachable_server_gives_one_error_naming_the_target_but_not_the_password() -> (
    None
):
    db = Database(
        "host=127.0.0.1 port=1 user=klaviyo password=sekret-pw dbname=shop",
        retry=RetryPolicy(attempts=3, base_s=0.01, sleep=instant_sleep),
        connect_timeout_s=2,
    )
    with pytest.raises(DatabaseUnavailableError) as caught:
        await db.open()
    message = str(caught.value)
    assert "127.0.0.1:1" in message and "database shop" in message and "user klaviyo" in message
    assert "after 3 attempts" in message
    assert "sekret-pw" not in message and "sekret-pw" not in repr(db)


async def test_slow_queries_are_logged_without_parameter_values(
    db_conninfo: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def work(conn: Conn) -> None:
        await conn.execute(
            "SELECT %s::text AS secret_value, pg_sleep(0.05)", ("person@example.com",)
        )

    caplog.set_level(logging.WARNING, logger="klaviyo_analytics.db.slow_query")
    async with Database(db_conninfo, min_size=1, max_size=2, slow_query_ms=20) as db:
        await db.run(work)
        assert db.metrics().slow_queries >= 1
    text = caplog.text
    assert "slow query" in text and "secret_value" in text
    assert "person@example.com" not in text


async def test_pool_metrics_report_use_and_health_check_passes(database: Database) -> None:
    async with database.connection():
        busy = database.metrics()
    assert busy.in_use >= 1 and busy.max_size == 5 and busy.utilisation_pct >= 20.0
    report = await database.health_check()
    assert report.ok and report.problems == () and report.server_version
    assert database.metrics().oldest_connection_age_s > 0


async def test_health_check_says_what_is_wrong_when_the_pool_is_exhausted(db_conninfo: str) -> None:
    async with Database(db_conninfo, min_size=1, max_size=1) as db, db.connection():
        report = await db.health_check(timeout_s=0.2)
    assert not report.ok
    assert "no connection free within 0.2s" in report.problems[0]


async def test_sessions_compute_in_utc_whatever_the_database_default_zone(
    db_conninfo: str, db_name: str
) -> None:
    """A day interval added to an instant is 24 hours even where the server's zone changes
    to daylight saving that week (US clocks moved on 2026-03-08): attribution and funnel
    windows depend on it."""
    with psycopg.connect(db_conninfo, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {db_name} SET timezone = 'America/New_York'")
    with psycopg.connect(db_conninfo) as plain:
        default = plain.execute("SELECT current_setting('TimeZone')").fetchone()
    assert default == ("America/New_York",)  # a plain session takes the new default

    async def arithmetic(conn: Conn) -> dict[str, object] | None:
        cur = await conn.execute(
            "SELECT current_setting('TimeZone') AS zone,"
            " '2026-03-10 12:00+00'::timestamptz - interval '7 days' AS week_before"
        )
        return await cur.fetchone()

    async with Database(db_conninfo, min_size=1, max_size=1) as db:
        row = await db.run(arithmetic)
    assert row is not None and row["zone"] == "UTC"
    assert row["week_before"] == datetime(2026, 3, 3, 12, tzinfo=UTC)
