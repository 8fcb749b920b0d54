"""Database upkeep: retention, planner statistics, sizes, unused and bloated indexes.

With TimescaleDB, retention and compression are policies run by TimescaleDB's own jobs (set
here from the configured intervals); without it, `apply_retention` deletes expired rows itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import DictRow, dict_row

logger = logging.getLogger(__name__)

Conn = AsyncConnection[DictRow]
COMPRESS_AFTER_DAYS = 90
BLOAT_MIN_BYTES = 8 * 1024 * 1024
BLOAT_MAX_LEAF_DENSITY = 50.0


@dataclass(frozen=True)
class RetentionRule:
    """Rows of `table` older than `interval` (by `column`) expire."""

    table: str
    column: str
    interval: str


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


async def apply_retention(conn: Conn, rules: list[RetentionRule]) -> dict[str, int]:
    """Enforce retention: set TimescaleDB policies, or delete expired rows; return rows deleted."""
    deleted: dict[str, int] = {}
    if await timescaledb_enabled(conn):
        for rule in rules:
            await conn.execute(
                "SELECT remove_retention_policy(%s::regclass, if_exists => true)", (rule.table,)
            )
            await conn.execute(
                "SELECT add_retention_policy(%s::regclass, %s::interval)",
                (rule.table, rule.interval),
            )
        for table in ("klaviyo_events", "klaviyo_aggregated_metrics"):
            await conn.execute(
                "SELECT add_compression_policy(%s::regclass, %s::interval, if_not_exists => true)",
                (table, f"{COMPRESS_AFTER_DAYS} days"),
            )
        return deleted
    for rule in rules:
        cur = await conn.execute(
            sql.SQL("DELETE FROM {t} WHERE {c} < now() - %s::interval").format(
                t=sql.Identifier(rule.table), c=sql.Identifier(rule.column)
            ),
            (rule.interval,),
        )
        deleted[rule.table] = cur.rowcount
    return deleted


async def relation_sizes(conn: Conn) -> list[RelationSize]:
    """Return every table and index of the public schema with its size, largest first."""
    cur = await conn.execute(
        "SELECT c.relname AS name, CASE c.relkind WHEN 'i' THEN 'index' ELSE 'table' END AS kind,"
        " pg_total_relation_size(c.oid) AS bytes, greatest(c.reltuples, 0)::bigint AS rows_estimate"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'i')"
        " ORDER BY bytes DESC, name"
    )
    return [RelationSize(**row) for row in await cur.fetchall()]


async def unused_indexes(conn: Conn) -> list[str]:
    """Return indexes never scanned since statistics were reset (keys and unique ones excepted)."""
    cur = await conn.execute(
        "SELECT s.indexrelname AS name FROM pg_stat_user_indexes s"
        " JOIN pg_index i ON i.indexrelid = s.indexrelid"
        " WHERE s.schemaname = 'public' AND s.idx_scan = 0 AND NOT i.indisunique"
        " AND NOT i.indisprimary ORDER BY pg_relation_size(s.indexrelid) DESC, name"
    )
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
            expired = await apply_retention(conn, rules)
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
        sizes = await relation_sizes(conn)
        unused = await unused_indexes(conn)
    if not timescale:
        notes.append("TimescaleDB not installed: retention enforced by deleting expired rows")
    return MaintenanceReport(
        timescaledb=timescale,
        expired_rows=expired,
        analyzed=True,
        sizes=sizes,
        unused_indexes=unused,
        rebuilt_indexes=rebuilt,
        notes=notes,
    )
