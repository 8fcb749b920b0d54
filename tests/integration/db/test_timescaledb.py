"""TimescaleDB's own behaviour: compressed chunks under re-syncs, idempotent policies.

About TimescaleDB: each test skips, saying so, on plain PostgreSQL; the suite's TimescaleDB
pass (scripts/test.sh) runs them. Policies are driven with `CALL run_job()`, since
TimescaleDB's background scheduler records every job as failed on PostgreSQL 15.20.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
from psycopg.rows import dict_row

from klaviyo_analytics.db import maintenance
from klaviyo_analytics.db.pool import Conn, Database
from klaviyo_analytics.db.repos.events import Event, EventRepository
from tests.fixtures.database import require_timescaledb

OLD = datetime(2025, 3, 3, tzinfo=UTC)


def batch(n: int, *, value: str = "10.00") -> list[Event]:
    return [
        Event(f"e{i}", OLD + timedelta(minutes=17 * i), "m-order", value=Decimal(value))
        for i in range(n)
    ]


def chunk_state(conninfo: str) -> tuple[int, int]:
    """Return (compressed chunks, rows outside compression) of klaviyo_events."""
    with psycopg.connect(conninfo) as conn:
        chunks = conn.execute(
            "SELECT format('%I.%I', chunk_schema, chunk_name) FROM timescaledb_information.chunks"
            " WHERE hypertable_name = 'klaviyo_events' AND is_compressed"
        ).fetchall()
        loose = 0
        for (name,) in chunks:
            row = conn.execute(f"SELECT count(*) FROM ONLY {name}").fetchone()
            loose += int(row[0]) if row else 0
    return len(chunks), loose


async def test_resync_of_unchanged_events_leaves_compressed_chunks_compressed(
    database: Database, db_conninfo: str
) -> None:
    require_timescaledb(db_conninfo)
    repo = EventRepository()

    async def write(events: list[Event]) -> int:
        async def work(conn: Conn) -> int:
            return await repo.upsert_many(conn, events)

        return await database.run(work)

    assert await write(batch(600)) == 600
    with psycopg.connect(db_conninfo, autocommit=True) as conn:
        conn.execute(
            "SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks('klaviyo_events') c"
        )
    compressed, loose = chunk_state(db_conninfo)
    assert compressed >= 1 and loose == 0

    assert await write(batch(600)) == 0  # a full re-sync that changes nothing
    assert chunk_state(db_conninfo) == (compressed, 0)  # nothing was decompressed

    # A changed event and a late one into the old, compressed chunk are stored exactly.
    late = Event("late", OLD + timedelta(hours=5, seconds=1), "m-order", value=Decimal("-3.50"))
    changed = Event("e3", OLD + timedelta(minutes=51), "m-order", value=Decimal("99.99"))
    assert await write([changed, late]) == 2
    with psycopg.connect(db_conninfo) as conn:
        rows = conn.execute(
            "SELECT id, value FROM klaviyo_events WHERE id IN ('e3', 'late', 'e4') ORDER BY id"
        ).fetchall()
        total = conn.execute("SELECT count(*), sum(value) FROM klaviyo_events").fetchone()
    assert rows == [("e3", Decimal("99.99")), ("e4", Decimal("10.00")), ("late", Decimal("-3.50"))]
    assert total == (601, Decimal("10.00") * 599 + Decimal("99.99") - Decimal("3.50"))


def test_policies_keep_their_jobs_across_maintenance_runs(db_conninfo: str) -> None:
    require_timescaledb(db_conninfo)

    def rules(events_months: int) -> list[maintenance.RetentionRule]:
        return maintenance.retention_rules(
            raw_responses_days=30,
            events_months=events_months,
            aggregates_months=24,
            predictions_months=12,
        )

    def jobs() -> dict[tuple[str, str], tuple[int, object]]:
        with psycopg.connect(db_conninfo) as conn:
            rows = conn.execute(
                "SELECT hypertable_name, proc_name, job_id, config FROM timescaledb_information.jobs"
                " WHERE proc_name IN ('policy_retention', 'policy_compression')"
            ).fetchall()
        return {(r[0], r[1]): (r[2], r[3]) for r in rows}

    async def run(events_months: int) -> maintenance.MaintenanceReport:
        return await maintenance.run_maintenance(db_conninfo, rules(events_months))

    asyncio.run(run(12))
    first = jobs()
    assert len(first) == 4 + 2  # retention on four tables, compression on two
    asyncio.run(run(12))
    assert jobs() == first  # the same jobs, the same ids

    asyncio.run(run(18))  # a new interval changes the job in place
    after = jobs()
    job_id, config = after[("klaviyo_events", "policy_retention")]
    assert job_id == first[("klaviyo_events", "policy_retention")][0]
    assert isinstance(config, dict) and config["drop_after"] == "18 months"
    assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in first.items()}


def test_retention_job_run_by_maintenance_drops_only_expired_chunks(db_conninfo: str) -> None:
    require_timescaledb(db_conninfo)
    now = datetime.now(UTC)
    with psycopg.connect(db_conninfo, autocommit=True) as conn:
        conn.execute("INSERT INTO klaviyo_metrics (id, name) VALUES ('m', 'Placed Order')")
        conn.execute(
            "INSERT INTO klaviyo_events (id, timestamp, metric_id) VALUES"
            " ('old', %s, 'm'), ('kept', %s, 'm')",
            (now - timedelta(days=500), now - timedelta(days=300)),
        )

    async def run() -> maintenance.MaintenanceReport:
        return await maintenance.run_maintenance(
            db_conninfo,
            maintenance.retention_rules(
                raw_responses_days=30, events_months=12, aggregates_months=24, predictions_months=12
            ),
        )

    report = asyncio.run(run())
    assert report.timescaledb and report.dropped_partitions["klaviyo_events"] == 1
    with psycopg.connect(db_conninfo, row_factory=dict_row) as conn:
        ids = [r["id"] for r in conn.execute("SELECT id FROM klaviyo_events").fetchall()]
    assert ids == ["kept"]
