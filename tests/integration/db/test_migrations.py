"""Migrations: from empty, twice, concurrently, with a tampered file, and a failing file."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import psycopg
import pytest

from klaviyo_analytics.db.migrate import Migration, load_migrations, migrate, status
from klaviyo_analytics.errors import MigrationError
from tests.fixtures.database import require_plain_postgresql, require_timescaledb

EXPECTED_TABLES = {
    "klaviyo_metrics",
    "klaviyo_profiles",
    "klaviyo_events",
    "klaviyo_aggregated_metrics",
    "klaviyo_campaigns",
    "klaviyo_campaign_messages",
    "klaviyo_flows",
    "klaviyo_flow_actions",
    "klaviyo_flow_messages",
    "klaviyo_lists",
    "klaviyo_segments",
    "klaviyo_forms",
    "klaviyo_templates",
    "raw_api_responses",
    "fact_revenue",
    "fact_engagement",
    "fact_conversions",
    "dim_time",
    "forecast_models",
    "forecast_predictions",
    "model_performance",
    "sync_state",
    "sync_runs",
    "sync_quarantine",
    "schema_migrations",
}


def tables(conninfo: str) -> set[str]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


async def test_migrating_an_empty_database_creates_every_table(empty_db_conninfo: str) -> None:
    applied = await migrate(empty_db_conninfo)
    assert [m.version for m in applied] == [m.version for m in load_migrations()]
    assert EXPECTED_TABLES <= tables(empty_db_conninfo)
    assert all(s.applied_at is not None for s in await status(empty_db_conninfo))


async def test_migrating_twice_applies_nothing_the_second_time(empty_db_conninfo: str) -> None:
    await migrate(empty_db_conninfo)
    assert await migrate(empty_db_conninfo) == []


async def test_concurrent_runs_apply_each_migration_once(empty_db_conninfo: str) -> None:
    first, second = await asyncio.gather(migrate(empty_db_conninfo), migrate(empty_db_conninfo))
    everything = [m.version for m in load_migrations()]
    assert sorted(m.version for m in first + second) == everything
    with psycopg.connect(empty_db_conninfo) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT version) FROM schema_migrations"
        ).fetchone()
    assert row == (len(everything), len(everything))


async def test_status_lists_pending_migrations_before_any_run(empty_db_conninfo: str) -> None:
    states = await status(empty_db_conninfo)
    assert states and all(s.applied_at is None for s in states)


async def test_an_edited_applied_migration_is_refused_with_its_name(empty_db_conninfo: str) -> None:
    migrations = load_migrations()
    await migrate(empty_db_conninfo, migrations=migrations)
    tampered = [replace(migrations[0], sql=migrations[0].sql + "\n-- edited\n"), *migrations[1:]]
    with pytest.raises(MigrationError, match=r"0001_roles_and_entities\.sql was edited"):
        await migrate(empty_db_conninfo, migrations=tampered)
    with pytest.raises(MigrationError, match="was edited"):
        await status(empty_db_conninfo, migrations=tampered)


async def test_a_failing_migration_leaves_nothing_half_applied(empty_db_conninfo: str) -> None:
    broken = Migration(1, "broken", "CREATE TABLE half_done (id int);\nSELECT no_such_function();")
    with pytest.raises(MigrationError, match=r"0001_broken\.sql failed and was rolled back"):
        await migrate(empty_db_conninfo, migrations=[broken])
    assert "half_done" not in tables(empty_db_conninfo)
    with psycopg.connect(empty_db_conninfo) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (0,)


def test_without_timescaledb_events_and_raw_responses_are_partitioned_by_month(
    db_conninfo: str,
) -> None:
    require_plain_postgresql(db_conninfo)
    with psycopg.connect(db_conninfo) as conn:
        kinds = conn.execute(
            "SELECT relname, relkind FROM pg_class"
            " WHERE relname IN ('klaviyo_events', 'raw_api_responses') ORDER BY 1"
        ).fetchall()
        keys = conn.execute(
            "SELECT pg_get_partkeydef('klaviyo_events'::regclass),"
            " pg_get_partkeydef('raw_api_responses'::regclass)"
        ).fetchone()
    assert kinds == [("klaviyo_events", "p"), ("raw_api_responses", "p")]
    assert keys == ('RANGE ("timestamp")', "RANGE (fetched_at)")


def test_timescaledb_present_makes_events_a_compressed_hypertable(db_conninfo: str) -> None:
    require_timescaledb(db_conninfo)
    with psycopg.connect(db_conninfo) as conn:
        rows = conn.execute(
            "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables"
        ).fetchall()
        settings = conn.execute(
            "SELECT attname, segmentby_column_index, orderby_column_index"
            " FROM timescaledb_information.compression_settings"
            " WHERE hypertable_name = 'klaviyo_events' ORDER BY attname"
        ).fetchall()
    hypertables = dict(rows)
    assert hypertables.get("klaviyo_events") is True
    assert "fact_revenue" in hypertables
    # Segments per metric, ordered by time and then id, the rest of the unique key (0014).
    assert settings == [("id", None, 2), ("metric_id", 1, None), ("timestamp", None, 1)]
