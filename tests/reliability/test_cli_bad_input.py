"""Every command fed invalid values: a non-zero exit, a message naming the problem, no traceback.

Each case runs the real command line in its own process. Cases that reach the database use this
test's own migrated database (DATABASE_URL); Klaviyo is a closed port on 127.0.0.1, so nothing
leaves the machine and a case that wrongly starts syncing fails fast instead of hanging.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fixtures.database import PgServer

HUGE = "9" * 40
SQL = "x'; DROP TABLE api_keys; --"


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    message: str  # a regular expression the output must contain (case-insensitive)
    env: dict[str, str] = field(default_factory=dict)


CASES: dict[str, Case] = {
    # sync
    "sync-unknown-stream": Case(("sync", "nosuch"), r"unknown stream 'nosuch'"),
    "sync-sql-stream": Case(("sync", SQL), r"unknown stream"),
    "sync-since-garbage": Case(("sync", "events", "--since", "yesterday-ish"), r"not a date"),
    "sync-since-future": Case(("sync", "events", "--since", "2999-01-01"), r"in the future"),
    "sync-since-empty": Case(("sync", "events", "--since", ""), r"not a date"),
    # scheduler
    "scheduler-run-now-unknown": Case(("scheduler", "--run-now", "nosuch"), r"nosuch"),
    "scheduler-schedules-unknown-job": Case(
        ("scheduler", "--list"), r"unknown jobs.*nosuch", {"SCHEDULES": '{"nosuch": "* * * * *"}'}
    ),
    "scheduler-schedules-bad-cron": Case(
        ("scheduler", "--list"), r"events.*cron|cron.*events", {"SCHEDULES": '{"events": "61 * *"}'}
    ),
    "scheduler-schedules-not-json": Case(
        ("scheduler", "--list"), r"SCHEDULES: not valid JSON", {"SCHEDULES": "{not json"}
    ),
    # backup
    "backup-unknown-kind": Case(("backup", "create", "--kind", "fortnightly"), r"fortnightly"),
    "backup-verify-missing-file": Case(
        ("backup", "verify", "/nonexistent/none.dump"), r"none\.dump"
    ),
    "backup-restore-missing-file": Case(
        ("backup", "restore", "/nonexistent/none.dump", "--new-db", "x"), r"none\.dump"
    ),
    "backup-restore-not-a-backup": Case(
        ("backup", "restore", "{not_a_backup}", "--new-db", "ka_never"), r"not_a_backup"
    ),
    "backup-pitr-restore-bad-time": Case(
        ("backup", "pitr", "restore", "--to", "soon", "--target-dir", "{tmp}/pitr"), r"soon"
    ),
    # apikey
    "apikey-bad-role": Case(("apikey", "create", "--name", "x", "--role", "god"), r"role 'god'"),
    "apikey-empty-name": Case(("apikey", "create", "--name", ""), r"name"),
    "apikey-blank-name": Case(("apikey", "create", "--name", "   "), r"name"),
    "apikey-huge-name": Case(("apikey", "create", "--name", "n" * 5000), r"name"),
    "apikey-control-chars": Case(("apikey", "create", "--name", "a\x07b"), r"name"),
    "apikey-revoke-unknown": Case(("apikey", "revoke", "987654"), r"no API key 987654"),
    "apikey-revoke-huge": Case(("apikey", "revoke", HUGE), r"no API key|out of range|" + HUGE),
    "apikey-revoke-not-a-number": Case(("apikey", "revoke", "abc"), r"key_id.*valid integer"),
    "apikey-revoke-sql": Case(("apikey", "revoke", SQL), r"key_id.*valid integer"),
    # serve, demo, sandbox, maintenance
    "serve-port-too-big": Case(
        ("serve", "--port", "70000"), r"--port.*less than or equal to 65535"
    ),
    "serve-port-zero": Case(("serve", "--port", "0"), r"--port.*greater than or equal to 1"),
    "demo-days-zero": Case(("demo", "--days", "0"), r"--days.*greater than or equal to 7"),
    "sandbox-port-too-big": Case(
        ("sandbox", "--port", "70000"), r"--port.*less than or equal to 65535"
    ),
    "sandbox-bad-probability": Case(("sandbox", "--fault-429", "1.5"), r"p429"),
    "sandbox-bad-end": Case(("sandbox", "--end", "tomorrow"), r"tomorrow"),
    "maintenance-top-zero": Case(
        ("maintenance", "--top", "0"), r"--top.*greater than or equal to 1"
    ),
    # analytics
    "analytics-bad-timezone": Case(
        ("analytics", "rebuild", "--timezone", "Mars/Olympus_Mons"), r"Mars/Olympus_Mons"
    ),
    "analytics-sql-timezone": Case(("analytics", "rebuild", "--timezone", SQL), r"DROP TABLE"),
    "analytics-unicode-timezone": Case(("analytics", "rebuild", "--timezone", "Ünï/😀"), r"Ünï"),
    # settings
    "migrate-db-port-abc": Case(("migrate",), r"DB_PORT", {"DB_PORT": "abc", "DB_HOST": "h"}),
    "migrate-db-port-huge": Case(("migrate",), r"DB_PORT", {"DB_PORT": HUGE, "DB_HOST": "h"}),
    "migrate-min-over-max": Case(
        ("migrate",),
        r"DB_MIN_CONNECTIONS",
        {"DB_MIN_CONNECTIONS": "20", "DB_MAX_CONNECTIONS": "5"},
    ),
    "migrate-bad-log-level": Case(("migrate",), r"LOG_LEVEL", {"LOG_LEVEL": "CHATTY"}),
    "migrate-bad-account-timezone": Case(
        ("migrate",), r"ACCOUNT_TIMEZONE", {"ACCOUNT_TIMEZONE": "Nowhere/Land"}
    ),
}


def cli_env(conninfo: str, extra: dict[str, str]) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DB_", "DATABASE_URL", "KLAVIYO_", "REDIS_URL", "SCHEDULES"))
    }
    env = {
        **base,
        "DATABASE_URL": conninfo,
        # A closed port: a case that wrongly reaches Klaviyo fails at once, not after a hang.
        "KLAVIYO_API_KEY": "pk_bad_input_0000",
        "KLAVIYO_BASE_URL": "http://127.0.0.1:9",
        "LOG_LEVEL": "WARNING",
        **extra,
    }
    if "DB_HOST" in extra or "DB_PORT" in extra:
        env.pop("DATABASE_URL")
    return env


@dataclass(frozen=True)
class Outcome:
    args: list[str]
    returncode: int
    out: str


def run_case(case: Case, conninfo: str, tmp: Path) -> Outcome:
    not_a_backup = tmp / "not_a_backup.dump"
    args = [a.format(not_a_backup=not_a_backup, tmp=tmp) for a in case.args]
    env = cli_env(conninfo, case.env)
    env["BACKUP_DIR"] = str(tmp / "backups")
    proc = subprocess.run(
        [sys.executable, "-m", "klaviyo_analytics.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return Outcome(args, proc.returncode, proc.stdout + proc.stderr)


@pytest.fixture(scope="module")
def outcomes(
    pg_server: PgServer, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Outcome]]:
    """Run every case once, a few processes at a time, on one migrated database."""
    name = f"ka_badinput_{uuid.uuid4().hex[:12]}"
    conninfo = pg_server.create_database(name, template=template_db)
    tmp = tmp_path_factory.mktemp("bad_input")
    (tmp / "not_a_backup.dump").write_text("this is not a pg_dump archive\n")
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = {n: pool.submit(run_case, c, conninfo, tmp) for n, c in CASES.items()}
            yield {n: f.result() for n, f in futures.items()}
    finally:
        pg_server.drop_database(name)


@pytest.mark.parametrize("name", sorted(CASES))
def test_invalid_input_exits_non_zero_naming_the_problem_without_a_traceback(
    name: str, outcomes: dict[str, Outcome]
) -> None:
    case, got = CASES[name], outcomes[name]
    assert got.returncode != 0, f"exit 0 for {got.args}:\n{got.out}"
    assert "Traceback" not in got.out, got.out
    # rich wraps long lines; compare without the line breaks and box characters it adds.
    flat = re.sub(r"[\s│╭╮╰╯─]+", " ", got.out)
    assert re.search(case.message, flat, re.IGNORECASE), f"no {case.message!r} in:\n{got.out}"
