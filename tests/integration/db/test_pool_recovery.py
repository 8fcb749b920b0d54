"""The pool while PostgreSQL is down and when it comes back, on a scratch server of its own.

The server here is started and stopped by this module only (its own data folder), never the
session's shared one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from klaviyo_analytics.db.embedded import EmbeddedPostgres
from klaviyo_analytics.db.pool import Conn, Database
from klaviyo_analytics.errors import DatabaseUnavailableError
from klaviyo_analytics.retry import RetryPolicy


@pytest.fixture(scope="module")
def scratch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(Path(tmp_path_factory.mktemp("scratch")) / "pgdata")
    with server:
        yield server


def server_settings_pool(conninfo: str) -> Database:
    # The defaults of the DB_* settings, as `serve` uses them.
    return Database(
        conninfo,
        min_size=5,
        max_size=50,
        connect_timeout_s=5.0,
        retry=RetryPolicy(attempts=4, base_s=0.1, cap_s=3.0, factor=2.0),
    )


async def one(conn: Conn) -> int:
    cur = await conn.execute("SELECT 1 AS one")
    row = await cur.fetchone()
    assert row is not None
    return int(row["one"])


async def test_requests_fail_fast_while_down_and_recover_soon_after(
    scratch_server: EmbeddedPostgres,
) -> None:
    async with server_settings_pool(scratch_server.conninfo("postgres")) as db:
        assert await db.run(one) == 1
        scratch_server.stop()
        try:
            took = []
            for _ in range(3):
                started = time.monotonic()
                with pytest.raises(DatabaseUnavailableError) as caught:
                    await db.run(one, readonly=False)
                took.append(time.monotonic() - started)
                # What an unauthenticated caller is shown: no user, socket or database name.
                message = str(caught.value)
                assert str(scratch_server.socket_dir) not in message
                assert "postgres" not in message and ".s.PGSQL" not in message
            assert max(took) < 1.0, took
            report = await db.health_check()
            assert not report.ok
            joined = " ".join(report.problems)
            assert "postgres" not in joined and ".s.PGSQL" not in joined
        finally:
            scratch_server.start()
        back = time.monotonic()
        while True:
            try:
                assert await db.run(one) == 1
                break
            except DatabaseUnavailableError:
                assert time.monotonic() - back < 5.0, "not recovered within 5 s"
                await asyncio.sleep(0.05)
        recovered_after = time.monotonic() - back
        print(f"failed requests took {took!r} s; recovered {recovered_after:.2f} s after start")
        assert recovered_after < 5.0
        assert (await db.health_check()).ok
