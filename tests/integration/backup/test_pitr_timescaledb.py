"""Point-in-time recovery of a TimescaleDB server, through the command line (issue 16).

Archiving needs a restart, so the test runs a TimescaleDB server of its own, started by the
CI machine's `<repo>/../shared/timescaledb/start-server.sh` in a temporary folder (as root).
It belongs to the suite's TimescaleDB pass and skips, saying why, anywhere else.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from klaviyo_analytics.backup.tools import with_dbname
from klaviyo_analytics.db import maintenance
from klaviyo_analytics.db.migrate import migrate
from tests.fixtures.database import PgServer, require_timescaledb
from tests.integration.backup.test_cli import run_cli

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "timescaledb"
START = SHARED / "start-server.sh"
RULES = maintenance.retention_rules(
    raw_responses_days=30, events_months=240, aggregates_months=240, predictions_months=240
)


@dataclass
class TimescaleServer:
    folder: Path
    port: int
    url: str

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [str(START), *args], capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def start(self) -> None:
        self.url = self.run(str(self.folder / "server"), str(self.port)).strip().splitlines()[-1]

    def stop(self) -> None:
        self.run("--stop", str(self.folder / "server"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def timescale_server(pg_server: PgServer) -> Iterator[TimescaleServer]:
    require_timescaledb(pg_server.admin_conninfo)
    if not START.is_file():
        pytest.skip(f"needs {START}: the TimescaleDB build lives only on the CI machine")
    if os.geteuid() != 0:
        pytest.skip(f"{START} must run as root")
    # Like scripts/test.sh: a folder the server's user `tsdb` can pass through.
    folder = Path(tempfile.mkdtemp(prefix="ka-pitr-timescaledb.", dir="/tmp"))
    folder.chmod(0o755)
    server = TimescaleServer(folder, free_port(), "")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def state(conninfo: str) -> dict[str, object]:
    """Return what recovery must bring back: rows, chunks and their compression, jobs."""
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT count(*), md5(string_agg(id || value::text, ',' ORDER BY id))"
            " FROM klaviyo_events"
        ).fetchone()
        chunks = conn.execute(
            "SELECT chunk_name, range_start, is_compressed FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'klaviyo_events' ORDER BY range_start"
        ).fetchall()
        jobs = conn.execute(
            "SELECT hypertable_name, proc_name, config - 'hypertable_id'"
            " FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL ORDER BY 1, 2"
        ).fetchall()
        settings = conn.execute(
            "SELECT attname, segmentby_column_index, orderby_column_index"
            " FROM timescaledb_information.compression_settings"
            " WHERE hypertable_name = 'klaviyo_events' ORDER BY 1"
        ).fetchall()
    return {"rows": rows, "chunks": chunks, "jobs": jobs, "compression": settings}


def job_id(conn: psycopg.Connection[tuple[object, ...]], proc: str) -> int:
    row = conn.execute(
        "SELECT job_id FROM timescaledb_information.jobs"
        " WHERE proc_name = %s AND hypertable_name = 'klaviyo_events'",
        (proc,),
    ).fetchone()
    assert row is not None
    return int(str(row[0]))


def test_point_in_time_recovery_of_timescaledb_keeps_hypertables_compression_and_policies(
    timescale_server: TimescaleServer, tmp_path: Path
) -> None:
    admin = timescale_server.url
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE DATABASE app")
    app = with_dbname(admin, "app")
    asyncio.run(migrate(app))
    asyncio.run(maintenance.run_maintenance(app, RULES))  # compression and retention policies
    env = {
        "DATABASE_URL": app,
        "KLAVIYO_ANALYTICS_HOME": str(tmp_path / "home"),
        "BACKUP_DIR": str(timescale_server.folder / "backups"),
    }

    # A login that may not change the server's settings gets the administrator's lines.
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE ROLE plain LOGIN")
    params = dict(env, DATABASE_URL=app.replace("user=postgres", "user=plain"))
    assert "user=plain" in params["DATABASE_URL"]
    refused = run_cli("pitr", "setup", env=params)
    assert refused.returncode == 1 and "ALTER SYSTEM SET archive_mode = on;" in refused.stderr

    # Archiving is set through our command; the administrator restarts the server.
    first = run_cli("pitr", "setup", env=env)
    assert first.returncode == 1 and "restart it, then run `backup pitr setup` again" in (
        first.stderr
    ), first.stderr + first.stdout
    timescale_server.stop()
    timescale_server.start()
    setup = run_cli("pitr", "setup", env=env)
    assert setup.returncode == 0, setup.stderr + setup.stdout
    assert "base backup:" in setup.stdout and "TimescaleDB 2.28.3" in setup.stdout

    with psycopg.connect(app, autocommit=True) as conn:
        conn.execute("INSERT INTO klaviyo_metrics (id, name) VALUES ('m1', 'Placed Order')")
        # Three weeks of May 2026 (three 7-day chunks, older than the policy's 90 days) and
        # one recent day that the policy leaves alone.
        conn.execute(
            "INSERT INTO klaviyo_events (id, timestamp, metric_id, value)"
            " SELECT 'a' || n, timestamptz '2026-05-01' + n * interval '1 hour', 'm1', n"
            " FROM generate_series(0, 503) n"
        )
        conn.execute(
            "INSERT INTO klaviyo_events (id, timestamp, metric_id, value)"
            " VALUES ('recent', now() - interval '1 day', 'm1', 1)"
        )
        conn.execute("CALL run_job(%s)", (job_id(conn, "policy_compression"),))
        noted_row = conn.execute("SELECT clock_timestamp()").fetchone()
        assert noted_row is not None
        noted: datetime = noted_row[0]
    at_noted = state(app)
    compressed = [c for c in at_noted["chunks"] if c[2]]  # type: ignore[attr-defined]
    assert len(compressed) >= 3

    time.sleep(0.2)
    with psycopg.connect(app, autocommit=True) as conn:
        # After the noted time: a late event into a compressed chunk, a new chunk compressed,
        # a compressed chunk decompressed, and the retention policy removed.
        conn.execute(
            "INSERT INTO klaviyo_events (id, timestamp, metric_id, value) VALUES"
            " ('late', '2026-05-02 10:30+00', 'm1', 7), ('june', '2026-06-20', 'm1', 8)"
        )
        conn.execute(
            "SELECT compress_chunk(c) FROM show_chunks('klaviyo_events',"
            " newer_than => '2026-06-15'::timestamptz, older_than => '2026-07-01'::timestamptz) c"
        )
        conn.execute(
            "SELECT decompress_chunk(c) FROM show_chunks('klaviyo_events',"
            " older_than => '2026-05-10'::timestamptz) c"
        )
        conn.execute("SELECT remove_retention_policy('klaviyo_events')")
    assert state(app) != at_noted

    target = timescale_server.folder / "recovered"
    restored = run_cli(
        "pitr", "restore", "--to", noted.isoformat(sep=" "), "--target-dir", str(target), env=env
    )
    assert restored.returncode == 0, restored.stderr + restored.stdout
    match = re.search(r'connect: psql "([^"]+)"', restored.stdout)
    assert match is not None, restored.stdout
    seconds = re.search(r"in ([0-9.]+)s", restored.stdout)
    print(f"recovered in {seconds.group(1) if seconds else '?'} s")
    recovered = match.group(1)
    try:
        with psycopg.connect(recovered, autocommit=True) as conn:
            assert conn.execute("SHOW shared_preload_libraries").fetchone() == ("timescaledb",)
            assert conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
            ).fetchone() == ("2.28.3",)
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
        assert state(recovered) == at_noted  # rows, chunks, compression, policies at that time
        with psycopg.connect(recovered, autocommit=True) as conn:
            ids = {r[0] for r in conn.execute("SELECT id FROM klaviyo_events WHERE id !~ '^a'")}
            assert ids == {"recent"}  # neither 'late' nor 'june'
            # It works as a TimescaleDB server: its policies run, late events reach compressed
            # chunks, new chunks are made.
            conn.execute("CALL run_job(%s)", (job_id(conn, "policy_retention"),))
            conn.execute(
                "INSERT INTO klaviyo_events (id, timestamp, metric_id) VALUES"
                " ('after', '2026-05-03', 'm1'), ('future', now() + interval '200 days', 'm1')"
            )
            assert conn.execute("SELECT count(*) FROM klaviyo_events").fetchone() == (507,)
    finally:
        stopped = run_cli("pitr", "stop", "--target-dir", str(target), env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert not (target / "postmaster.pid").exists()

    # A base backup of a TimescaleDB version that is not installed here is refused up front.
    [meta] = (timescale_server.folder / "backups" / "base").glob("*/base.json")
    assert json.loads(meta.read_text())["timescaledb"] == "2.28.3"
    meta.write_text(meta.read_text().replace('"2.28.3"', '"9.9.9"'))
    other = timescale_server.folder / "other"
    missing = run_cli(
        "pitr", "restore", "--to", noted.isoformat(sep=" "), "--target-dir", str(other), env=env
    )
    assert missing.returncode == 1 and "install TimescaleDB 9.9.9" in missing.stderr
    assert not other.exists() or not any(other.iterdir())
