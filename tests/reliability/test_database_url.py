"""A malformed DATABASE_URL: one line naming the variable, exit 2, no password, no retries."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from klaviyo_analytics.db.pool import Database
from klaviyo_analytics.errors import ConfigurationError, DatabaseUnavailableError
from klaviyo_analytics.retry import RetryPolicy

PASSWORD = "Hunter2Secret"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"mysql://admin:{PASSWORD}@127.0.0.1/db", "scheme 'mysql' is not PostgreSQL"),
        ("garbage", "not a PostgreSQL connection string"),
        (f"postgresql://u:{PASSWORD}@127.0.0.1:notaport/db", "port 'notaport'"),
        (f"postgresql://u:{PASSWORD}@127.0.0.1/db?sslmode=%zz", "not a valid PostgreSQL"),
    ],
)
def test_a_bad_database_url_exits_2_with_one_line_and_no_password(
    url: str, problem: str, tmp_path: object
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "PG", "KLAVIYO_"))}
    env.update(DATABASE_URL=url, KLAVIYO_ANALYTICS_HOME=str(tmp_path), COLUMNS="60")
    done = subprocess.run(
        [sys.executable, "-m", "klaviyo_analytics.cli", "migrate", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert PASSWORD not in output
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "DATABASE_URL" in lines[0] and problem in lines[0]


async def test_a_malformed_url_is_refused_at_once_and_not_retried() -> None:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    db = Database(
        "postgresql://u:p@127.0.0.1:notaport/db",
        retry=RetryPolicy(attempts=4, base_s=0.5, sleep=sleep),
    )
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as caught:
        await db.open()
    assert time.monotonic() - started < 1 and sleeps == []
    assert "port 'notaport' of host 127.0.0.1" in str(caught.value)


async def test_a_one_letter_password_does_not_garble_the_error() -> None:
    db = Database(
        "postgresql://u:p@127.0.0.1:1/db",
        retry=RetryPolicy(attempts=1),
        connect_timeout_s=2,
    )
    with pytest.raises(DatabaseUnavailableError) as caught:
        await db.open()
    message = str(caught.value)
    # libpq's own words survive intact (substring masking turned them into "***ort 1").
    assert 'connection to server at "127.0.0.1", port 1 failed' in message
    assert "user u at 127.0.0.1:1, database db" in message
