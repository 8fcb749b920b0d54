"""Database upkeep: retention, planner statistics, sizes, unused and bloated indexes.

With TimescaleDB, retention and compression are policies run by TimescaleDB's own jobs (set
here from the configured intervals); without it, `apply_retention` deletes expired rows itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import DictRow, dict_row

from klaviyo_analytics.db import partitions

logger = logging.getLogger(__name__)

Conn = AsyncConnection[DictRow]
BLOAT_MIN_BYTES = 8 * 1024 * 1024
BLOAT_MAX_LEAF_DENSITY = 50.0


@dataclass(frozen=True)
class RetentionRule:
    """Rows of `table` older than `interval` (by `column`) expire."""

    table: str
    column: str
    interval: str


@dataclass
class Retention:
    """What retention did: rows deleted, partitions or chunks dropped, policy jobs per table."""

    deleted: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    jobs: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RelationSize:
    """The on-disk size of a table or index."""

    name: str
    kind: str
    bytes: int
    rows_estimate: int


@dataclass(frozen=True)
class MaintenanceReport:
    """What one maintenance run did and found."""

    timescaledb: bool
    expired_rows: dict[str, int]
    dropped_partitions: dict[str, int]
    analyzed: bool
    sizes: list[RelationSize]
    unused_indexes: list[str]
    rebuilt_indexes: list[str]
    notes: list[str]


def retention_rules(
    *, raw_responses_days: int, events_months: int, aggregates_months: int, predictions_months: int
) -> list[RetentionRule]:
    """Return the retention rules for the configured intervals."""
    return [
        RetentionRule("raw_api_responses", "fetched_at", f"{raw_responses_days} days"),
        RetentionRule("klaviyo_events", "timestamp", f"{events_months} months"),
        RetentionRule("klaviyo_aggregated_metrics", "bucket_start", f"{aggregates_months} months"),
        RetentionRule("forecast_predictions", "date", f"{predictions_months} months"),
    ]


async def timescaledb_enabled(conn: Conn) -> bool:
    """Say whether the TimescaleDB extension is installed in this database."""
    cur = await conn.execute("SELECT count(*) AS n FROM pg_extension WHERE extname = 'timescaledb'")
    row = await cur.fetchone()
    return bool(row and row["n"])


async def apply_retention(conn: Conn, rules: list[RetentionRule]) -> Retention:
    """Enforce retention inside the caller's transaction.

    With TimescaleDB: set the retention and compression policies (idempotently; the jobs keep
    their ids) and return the retention jobs for the caller to run. Without it: drop the
    partitions of partitioned tables that lie wholly before the cutoff, keep partitions made
    ahead, and delete expired rows of ordinary tables.
    """
    done = Retention()
    if await timescaledb_enabled(conn):
        for rule in rules:
            done.jobs[rule.table] = await partitions.set_retention_policy(
                conn, rule.table, rule.interval
            )
        for table in partitions.COMPRESSED:
            await partitions.set_compression_policy(conn, table)
        return done
    for rule in rules:
        if await partitions.is_partitioned(conn, rule.table):
            # Ahead first: rows that waited in the DEFAULT partition move into their month,
            # which then expires as a whole like any other.
            await partitions.ensure_ahead(conn, rule.table)
            done.dropped[rule.table] = len(
                await partitions.drop_expired(conn, rule.table, rule.interval)
            )
            continue
        cur = await conn.execute(
            sql.SQL("DELETE FROM {t} WHERE {c} < now() - %s::interval").format(
                t=sql.Identifier(rule.table), c=sql.Identifier(rule.column)
            ),
            (rule.interval,),
        )
        done.deleted[rule.table] = cur.rowcount
    return done


async def run_retention_jobs(conn: Conn, jobs: dict[str, int]) -> dict[str, int]:
    """Run TimescaleDB retention jobs now (autocommit); return chunks dropped per table.

    `CALL run_job()` runs the policy in this session. TimescaleDB's own scheduler runs them
    too, but on PostgreSQL 15.20 it records every run as failed (an upstream bug).
    """
    dropped: dict[str, int] = {}
    for table, job in jobs.items():
        before = await partitions.chunk_count(conn, table)
        await partitions.run_job(conn, job)
        dropped[table] = before - await partitions.chunk_count(conn, table)
    return dropped


# A partitioned table or index is listed once, with the sizes and rows of its partitions.
SIZES_SQL = """
SELECT c.relname AS name, CASE WHEN c.relkind IN ('i', 'I') THEN 'index' ELSE 'table' END AS kind,
       (SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0) FROM pg_partition_tree(c.oid) t
         WHERE t.isleaf)::bigint AS bytes,
       (SELECT coalesce(sum(greatest(k.reltuples, 0)), 0) FROM pg_partition_tree(c.oid) t
          JOIN pg_class k ON k.oid = t.relid WHERE t.isleaf)::bigint AS rows_estimate
FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'i', 'I')
  AND NOT c.relispartition
"""
# With TimescaleDB a hypertable's rows live in chunks (and compressed chunks) of another
# schema: its size and rows come from TimescaleDB's functions.
TIMESCALE_SIZES_SQL = """
WITH ht AS (SELECT format('%I.%I', hypertable_schema, hypertable_name)::regclass AS oid
            FROM timescaledb_information.hypertables)
SELECT c.relname AS name, CASE WHEN c.relkind IN ('i', 'I') THEN 'index' ELSE 'table' END AS kind,
       CASE WHEN c.oid IN (SELECT oid FROM ht) THEN hypertable_size(c.oid)
            WHEN i.indrelid IN (SELECT oid FROM ht) THEN hypertable_index_size(c.oid)
            ELSE pg_total_relation_size(c.oid) END::bigint AS bytes,
       CASE WHEN c.oid IN (SELECT oid FROM ht) THEN approximate_row_count(c.oid)
            ELSE greatest(c.reltuples, 0) END::bigint AS rows_estimate
FROM pg_class c LEFT JOIN pg_index i ON i.indexrelid = c.oid
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'i', 'I')
  AND NOT c.relispartition
"""
# Scans of an index: its own, its partitions' (plain PostgreSQL), its chunks' (TimescaleDB).
UNUSED_SQL = """
SELECT c.relname AS name
FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('i', 'I')
  AND NOT c.relispartition AND NOT i.indisunique AND NOT i.indisprimary
  AND (SELECT coalesce(sum(s.idx_scan), 0) FROM pg_partition_tree(c.oid) t
        JOIN pg_stat_all_indexes s ON s.indexrelid = t.relid) = 0
  {chunks}
ORDER BY (SELECT coalesce(sum(pg_relation_size(t.relid)), 0) FROM pg_partition_tree(c.oid) t) DESC,
         name
"""
# A chunk's copy of a hypertable index has the same definition after "USING".
CHUNK_SCANS = """
  AND NOT EXISTS (
    SELECT 1 FROM timescaledb_information.chunks ch
      JOIN pg_index ci ON ci.indrelid = format('%I.%I', ch.chunk_schema, ch.chunk_name)::regclass
      JOIN pg_stat_all_indexes s ON s.indexrelid = ci.indexrelid
     WHERE format('%I.%I', ch.hypertable_schema, ch.hypertable_name)::regclass = i.indrelid
       AND s.idx_scan > 0
       AND split_part(pg_get_indexdef(ci.indexrelid), ' USING ', 2)
         = split_part(pg_get_indexdef(c.oid), ' USING ', 2))
"""


T = TypeVar("T")
# A report's read may lose a deadlock to TimescaleDB's own background jobs (a policy's first run
# starts the moment the policy is added, and compressing a chunk locks it and its indexes in the
# opposite order to the size functions); the read is repeated, it changes nothing.
REPORT_ATTEMPTS = 3


async def _report(read: Callable[[Conn], Awaitable[T]], conn: Conn) -> T:
    for attempt in range(1, REPORT_ATTEMPTS + 1):
        try:
            return await read(conn)
        except psycopg.errors.DeadlockDetected:
            if attempt == REPORT_ATTEMPTS:
                raise
            logger.info("maintenance report lost a deadlock to a background job; reading again")
            await asyncio.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


async def relation_sizes(conn: Conn) -> list[RelationSize]:
    """Return every table and index of the public schema with its size, largest first.

    Partitioned tables, hypertables and their indexes count the partitions or chunks (and
    TimescaleDB's compressed chunks) that hold their rows; partitions are not listed apart.
    """
    query = TIMESCALE_SIZES_SQL if await timescaledb_enabled(conn) else SIZES_SQL
    cur = await conn.execute(query)
    rows = [RelationSize(**row) for row in await cur.fetchall()]
    return sorted(rows, key=lambda r: (-r.bytes, r.name))


async def unused_indexes(conn: Conn) -> list[str]:
    """Return indexes never scanned since statistics were reset (keys and unique ones excepted).

    Scans of the partitions' or chunks' indexes count for the index they were made from.
    """
    chunks = CHUNK_SCANS if await timescaledb_enabled(conn) else ""
    cur = await conn.execute(UNUSED_SQL.format(chunks=chunks))
    return [row["name"] for row in await cur.fetchall()]


async def bloated_indexes(conn: Conn) -> list[str] | None:
    """Return B-tree indexes over 8 MiB whose leaf pages are less than half full.

    Returns None when the pgstattuple extension (which measures it) is not available.
    """
    try:
        async with conn.transaction():
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
    except psycopg.Error:
        return None
    cur = await conn.execute(
        "SELECT c.relname AS name FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am a ON a.oid = c.relam"
        " WHERE n.nspname = 'public' AND c.relkind = 'i' AND a.amname = 'btree'"
        " AND pg_relation_size(c.oid) >= %s"
        " AND (pgstatindex(c.oid::regclass)).avg_leaf_density < %s ORDER BY name",
        (BLOAT_MIN_BYTES, BLOAT_MAX_LEAF_DENSITY),
    )
    return [row["name"] for row in await cur.fetchall()]


async def run_maintenance(conninfo: str, rules: list[RetentionRule]) -> MaintenanceReport:
    """Apply retention, refresh planner statistics, report sizes and rebuild bloated indexes.

    Runs in autocommit mode, since REINDEX CONCURRENTLY cannot run inside a transaction.
    """
    notes: list[str] = []
    async with await AsyncConnection.connect(
        conninfo, autocommit=True, row_factory=dict_row
    ) as conn:
        timescale = await timescaledb_enabled(conn)
        async with conn.transaction():
            retention = await apply_retention(conn, rules)
        if retention.jobs:
            retention.dropped.update(await run_retention_jobs(conn, retention.jobs))
        await conn.execute("ANALYZE")
        bloated = await bloated_indexes(conn)
        rebuilt: list[str] = []
        if bloated is None:
            notes.append("pgstattuple is not available: index bloat was not measured")
        for name in bloated or []:
            logger.info("rebuilding bloated index %s", name)
            await conn.execute(
                sql.SQL("REINDEX INDEX CONCURRENTLY {}").format(sql.Identifier(name))
            )
            rebuilt.append(name)
        sizes = await _report(relation_sizes, conn)
        unused = await _report(unused_indexes, conn)
    if not timescale:
        notes.append(
            "TimescaleDB not installed: retention drops expired monthly partitions"
            " (and deletes expired rows of unpartitioned tables)"
        )
    return MaintenanceReport(
        timescaledb=timescale,
        expired_rows=retention.deleted,
        dropped_partitions=retention.dropped,
        analyzed=True,
        sizes=sizes,
        unused_indexes=unused,
        rebuilt_indexes=rebuilt,
        notes=notes,
    )
