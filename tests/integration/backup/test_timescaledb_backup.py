"""Backups of a TimescaleDB database: hypertables, compressed chunks and policies round-trip.

About TimescaleDB: skips, saying so, on plain PostgreSQL; the suite's TimescaleDB pass
(scripts/test.sh) runs it.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import psycopg

from klaviyo_analytics.backup.dump import create_backup
from klaviyo_analytics.backup.restore import restore_backup
from klaviyo_analytics.db import maintenance
from tests.fixtures.database import PgServer, require_timescaledb, settle_timescaledb_jobs
from tests.integration.backup.helpers import fingerprints, seed

RULES = maintenance.retention_rules(
    raw_responses_days=30, events_months=120, aggregates_months=120, predictions_months=120
)


def timescale_state(conninfo: str) -> tuple[int, int, list[tuple[str, str, object]]]:
    """Return (chunks, compressed chunks, jobs) of the database."""
    with psycopg.connect(conninfo) as conn:
        counts = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE is_compressed)"
            " FROM timescaledb_information.chunks WHERE hypertable_name = 'klaviyo_events'"
            " AND (SELECT count(*) > 0 FROM ONLY klaviyo_events) IS NOT NULL"
        ).fetchone()
        jobs = conn.execute(
            "SELECT hypertable_name, proc_name, config - 'hypertable_id'"
            " FROM timescaledb_information.jobs WHERE hypertable_name IS NOT NULL ORDER BY 1, 2"
        ).fetchall()
    assert counts is not None
    return int(counts[0]), int(counts[1]), [tuple(j) for j in jobs]


def test_compressed_hypertables_and_policies_survive_backup_verify_and_restore(
    pg_server: PgServer, db_conninfo: str, tmp_path: Path
) -> None:
    require_timescaledb(db_conninfo)
    seed(db_conninfo, events=3000)  # about three weeks: several 7-day chunks
    asyncio.run(maintenance.run_maintenance(db_conninfo, RULES))
    settle_timescaledb_jobs(db_conninfo)
    with psycopg.connect(db_conninfo, autocommit=True) as conn:
        conn.execute(
            "SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks('klaviyo_events', older_than => %s::timestamptz) c",
            ("2026-01-15",),
        )
    before = fingerprints(db_conninfo)
    chunks, compressed, jobs = timescale_state(db_conninfo)
    assert compressed >= 1 and len(jobs) == 6

    result = create_backup(
        conninfo=db_conninfo, backup_dir=tmp_path, kind="daily", trial_restore=True
    )
    target = f"ka_tsr_{uuid.uuid4().hex[:10]}"
    try:
        restore_backup(result.path, conninfo=db_conninfo, new_db=target)
        restored = pg_server.conninfo(target)
        assert fingerprints(restored) == before
        assert timescale_state(restored) == (chunks, compressed, jobs)
        # The restored database works as a TimescaleDB database: new chunks, late events.
        with psycopg.connect(restored, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO klaviyo_events (id, timestamp, metric_id) VALUES"
                " ('after', '2031-05-05', 'm_open'), ('late', '2026-01-02 03:04:05+00', 'm_open')"
            )
            assert conn.execute("SELECT count(*) FROM klaviyo_events").fetchone() == (3002,)
        # Restoring over the live database swaps the TimescaleDB database in.
        restore_backup(result.path, conninfo=db_conninfo, force=True)
        assert fingerprints(db_conninfo) == before
    finally:
        pg_server.drop_database(target)
