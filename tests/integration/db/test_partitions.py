"""Time partitioning on both back ends: monthly partitions on plain PostgreSQL, chunks on
TimescaleDB; created ahead of the data, dropped whole by retention, counted by maintenance.

Each test says which back end it is about; the suite runs on both (scripts/test.sh).
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg.rows import dict_row

from klaviyo_analytics.db import maintenance, partitions
from klaviyo_analytics.db.migrate import load_migrations, migrate
from klaviyo_analytics.db.pool import Conn, Database
from klaviyo_analytics.db.repos.events import Event, EventRepository
from tests.fixtures.database import require_plain_postgresql, uses_timescaledb

RULES = maintenance.retention_rules(
    raw_responses_days=30, events_months=12, aggregates_months=24, predictions_months=12
)


def months_ago(n: int) -> datetime:
    now = datetime.now(UTC)
    return now - timedelta(days=30 * n)


def insert_events(conninfo: str, times: list[datetime]) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO klaviyo_metrics (id, name) VALUES ('m', 'Placed Order')"
            " ON CONFLICT DO NOTHING"
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO klaviyo_events (id, timestamp, metric_id, value) VALUES (%s, %s, 'm', 1)",
                [(f"e{i}", t) for i, t in enumerate(times)],
            )


def where_stored(conninfo: str, event_id: str) -> str:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT tableoid::regclass::text FROM klaviyo_events WHERE id = %s", (event_id,)
        ).fetchone()
    assert row is not None, f"event {event_id} is not stored"
    return str(row[0])


def test_plain_postgresql_existing_rows_move_into_monthly_partitions(
    empty_db_conninfo: str,
) -> None:
    require_plain_postgresql(empty_db_conninfo)
    before = [m for m in load_migrations() if m.version < 14]
    asyncio.run(migrate(empty_db_conninfo, migrations=before))
    times = [datetime(2025, 1, 15, tzinfo=UTC) + timedelta(days=9 * i) for i in range(40)]
    insert_events(empty_db_conninfo, times)
    with psycopg.connect(empty_db_conninfo, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO raw_api_responses (endpoint, url, status, body)"
            " VALUES ('get_events', 'u', 200, '{}'), ('get_events', 'u', 200, '{}')"
        )
    asyncio.run(migrate(empty_db_conninfo))

    with psycopg.connect(empty_db_conninfo, autocommit=True) as conn:
        kind = conn.execute("SELECT relkind FROM pg_class WHERE relname = 'klaviyo_events'")
        assert kind.fetchone() == ("p",)
        assert conn.execute("SELECT count(*) FROM klaviyo_events").fetchone() == (40,)
        assert conn.execute("SELECT count(*) FROM klaviyo_events_default").fetchone() == (0,)
        months = {t.strftime("%Y%m") for t in times}
        names = {
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = 'klaviyo_events'::regclass"
            )
        }
        assert {f"klaviyo_events_p{m}" for m in months} <= names
        # Every partition has every index of the parent (6 on events, the key included).
        n_indexes = conn.execute(
            "SELECT count(*) FROM pg_index WHERE indrelid = 'klaviyo_events_p202503'::regclass"
        ).fetchone()
        parent_indexes = conn.execute(
            "SELECT count(*) FROM pg_index WHERE indrelid = 'klaviyo_events'::regclass"
        ).fetchone()
        assert n_indexes == parent_indexes and parent_indexes is not None and parent_indexes[0] >= 6
        # The identity carries on after the rows that were copied over.
        new_id = conn.execute(
            "INSERT INTO raw_api_responses (endpoint, url, status, body)"
            " VALUES ('get_events', 'u', 200, '{}') RETURNING id"
        ).fetchone()
        assert new_id == (3,)
    assert where_stored(empty_db_conninfo, "e0") == "klaviyo_events_p202501"


async def test_a_backfill_creates_the_partitions_or_chunks_its_range_needs(
    database: Database, db_conninfo: str
) -> None:
    repo = EventRepository()
    lo, hi = datetime(2019, 3, 2, tzinfo=UTC), datetime(2019, 4, 20, tzinfo=UTC)

    async def ensure(conn: Conn) -> int:
        return await repo.ensure_partitions(conn, lo, hi)

    assert await database.run(ensure) > 0
    assert await database.run(ensure) == 0  # all there now: nothing made twice

    async def write(conn: Conn) -> int:
        return await repo.upsert_many(
            conn, [Event("old", datetime(2019, 3, 9, 12, tzinfo=UTC), "m-1", value=None)]
        )

    assert await database.run(write) == 1
    stored = where_stored(db_conninfo, "old")
    if uses_timescaledb(db_conninfo):
        assert stored.startswith("_timescaledb_internal._hyper_")
    else:
        assert stored == "klaviyo_events_p201903"


def test_plain_postgresql_retention_drops_whole_expired_partitions(db_conninfo: str) -> None:
    require_plain_postgresql(db_conninfo)
    insert_events(db_conninfo, [months_ago(n) for n in range(0, 16)])

    async def run() -> maintenance.Retention:
        async with await psycopg.AsyncConnection.connect(db_conninfo, row_factory=dict_row) as conn:
            done = await maintenance.apply_retention(conn, RULES)
            await conn.commit()
            return done

    done = asyncio.run(run())
    assert done.dropped["klaviyo_events"] >= 3
    assert "klaviyo_events" not in done.deleted  # no DELETE of events: partitions dropped
    with psycopg.connect(db_conninfo) as conn:
        oldest = conn.execute("SELECT min(timestamp) FROM klaviyo_events").fetchone()
        kept = conn.execute("SELECT count(*) FROM klaviyo_events").fetchone()
    assert oldest is not None and oldest[0] > months_ago(14)
    assert kept is not None and 12 <= kept[0] <= 13  # whole months only: one may linger


def test_plain_postgresql_maintenance_keeps_partitions_ahead_and_rehomes_strays(
    db_conninfo: str,
) -> None:
    require_plain_postgresql(db_conninfo)
    ahead = (datetime.now(UTC).replace(day=1) + timedelta(days=62)).strftime("%Y%m")
    with psycopg.connect(db_conninfo, autocommit=True) as conn:
        conn.execute(f"DROP TABLE klaviyo_events_p{ahead}")
    insert_events(db_conninfo, [datetime(2021, 6, 3, tzinfo=UTC)])
    assert where_stored(db_conninfo, "e0") == "klaviyo_events_default"

    async def run() -> int:
        async with await psycopg.AsyncConnection.connect(db_conninfo, row_factory=dict_row) as conn:
            made = await partitions.ensure_ahead(conn, "klaviyo_events")
            await conn.commit()
            return made

    assert asyncio.run(run()) == 2
    assert where_stored(db_conninfo, "e0") == "klaviyo_events_p202106"
    with psycopg.connect(db_conninfo) as conn:
        row = conn.execute("SELECT to_regclass(%s)", (f"klaviyo_events_p{ahead}",)).fetchone()
    assert row is not None and row[0] is not None


def test_sizes_and_rows_count_what_partitions_or_chunks_hold(db_conninfo: str) -> None:
    insert_events(db_conninfo, [months_ago(0) - timedelta(hours=i * 7) for i in range(3000)])

    async def run() -> tuple[list[maintenance.RelationSize], list[str]]:
        async with await psycopg.AsyncConnection.connect(
            db_conninfo, autocommit=True, row_factory=dict_row
        ) as conn:
            await conn.execute("ANALYZE klaviyo_events")
            await conn.execute("SET enable_seqscan = off")
            await conn.execute(
                "SELECT count(*) FROM klaviyo_events WHERE metric_id = 'm' AND timestamp > now() - interval '30 days'"
            )
            await conn.execute("SELECT pg_stat_force_next_flush()")
            await conn.execute("SELECT 1")  # the flush happens at the end of a statement
            return await maintenance.relation_sizes(conn), await maintenance.unused_indexes(conn)

    sizes, unused = asyncio.run(run())
    events = next(s for s in sizes if s.name == "klaviyo_events")
    assert events.kind == "table"
    assert 2500 <= events.rows_estimate <= 3500
    assert events.bytes > 500_000  # the rows' partitions or chunks, not an empty parent
    assert not [
        s.name for s in sizes if re.match(r"klaviyo_events_(p\d{6}|default)|_hyper_", s.name)
    ]
    assert "klaviyo_events_attribution_idx" in unused
    scanned = {"klaviyo_events_metric_time_idx", "klaviyo_events_recent_idx"}  # either serves
    assert scanned - set(unused), f"an index the query used is reported unused: {unused}"
