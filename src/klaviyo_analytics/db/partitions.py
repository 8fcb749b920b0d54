"""Time partitions: retention by whole partitions or chunks, partitions kept ahead, policies.

Plain PostgreSQL partitions klaviyo_events and raw_api_responses by month (migration 0014);
retention drops every partition that lies wholly before the cutoff, and the maintenance run
creates the next months' partitions ahead of the data. With TimescaleDB the same is done by
its policies, set idempotently here (a policy that already has the configured interval keeps
its job and id) and run at once with `CALL run_job()`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection, sql
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

logger = logging.getLogger(__name__)

Conn = AsyncConnection[DictRow]
PARTITIONED = ("klaviyo_events", "raw_api_responses")
MONTHS_AHEAD = 3
COMPRESSED = ("klaviyo_events", "klaviyo_aggregated_metrics")
COMPRESS_AFTER_DAYS = 90


@dataclass(frozen=True)
class Partition:
    """One partition of a partitioned table and the half-open range it holds."""

    name: str
    start: datetime
    end: datetime


async def is_partitioned(conn: Conn, table: str) -> bool:
    """Say whether `table` is a natively partitioned table."""
    cur = await conn.execute(
        "SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(%s)", (table,)
    )
    return await cur.fetchone() is not None


async def partitions(conn: Conn, table: str) -> list[Partition]:
    """Return the range partitions of `table` (its DEFAULT partition excepted), oldest first."""
    cur = await conn.execute(
        "SELECT c.relname AS name,"
        " (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \\(''([^'']+)''\\)'))[1]"
        "   ::timestamptz AS start,"
        " (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \\(''([^'']+)''\\)'))[1]"
        "   ::timestamptz AS end"
        " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = to_regclass(%s)"
        " AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT' ORDER BY 2",
        (table,),
    )
    return [Partition(**row) for row in await cur.fetchall()]


async def ensure_ahead(conn: Conn, table: str, *, months: int = MONTHS_AHEAD) -> int:
    """Create this month's and the next `months` partitions of `table`; move stray rows.

    Rows that landed in the DEFAULT partition (no partition existed for them yet) move into
    their month's partition. Returns how many partitions were created.
    """
    default = sql.Identifier(f"{table}_default")
    column = sql.Identifier("timestamp" if table == "klaviyo_events" else "fetched_at")
    cur = await conn.execute(
        sql.SQL(
            "SELECT ka_ensure_partitions(%s, now(), now() + make_interval(months => %s))"
            " + coalesce((SELECT ka_ensure_partitions(%s, min({c}), max({c})) FROM {d}), 0) AS n"
        ).format(c=column, d=default),
        (table, months, table),
    )
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def drop_expired(conn: Conn, table: str, interval: str) -> list[str]:
    """Drop the partitions of `table` wholly older than now() - `interval`; return their names.

    Expired rows of the DEFAULT partition are deleted (it holds few rows, if any).
    """
    cur = await conn.execute("SELECT now() - %s::interval AS cutoff", (interval,))
    row = await cur.fetchone()
    assert row is not None
    cutoff: datetime = row["cutoff"]
    dropped: list[str] = []
    for part in await partitions(conn, table):
        if part.end <= cutoff:
            await conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(part.name)))
            dropped.append(part.name)
    column = sql.Identifier("timestamp" if table == "klaviyo_events" else "fetched_at")
    await conn.execute(
        sql.SQL("DELETE FROM {d} WHERE {c} < %s").format(
            d=sql.Identifier(f"{table}_default"), c=column
        ),
        (cutoff,),
    )
    if dropped:
        logger.info("dropped expired partitions of %s: %s", table, ", ".join(dropped))
    return dropped


async def set_retention_policy(conn: Conn, table: str, interval: str) -> int:
    """Make TimescaleDB drop chunks of `table` older than `interval`; return the job id.

    An existing retention job keeps its id: its interval is changed in place when it differs.
    """
    cur = await conn.execute(
        "SELECT job_id, config, (config ->> 'drop_after')::interval = %s::interval AS same"
        " FROM timescaledb_information.jobs WHERE proc_name = 'policy_retention'"
        " AND format('%%I.%%I', hypertable_schema, hypertable_name)::regclass = %s::regclass",
        (interval, table),
    )
    row = await cur.fetchone()
    if row is None:
        cur = await conn.execute(
            "SELECT add_retention_policy(%s::regclass, %s::interval) AS job_id", (table, interval)
        )
        row = await cur.fetchone()
        assert row is not None
    elif not row["same"]:
        await conn.execute(
            "SELECT alter_job(%s, config => %s)",
            (row["job_id"], Jsonb({**row["config"], "drop_after": interval})),
        )
    return int(row["job_id"])


async def set_compression_policy(conn: Conn, table: str) -> int:
    """Make TimescaleDB compress chunks of `table` older than 90 days; return the job id."""
    cur = await conn.execute(
        "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression'"
        " AND format('%%I.%%I', hypertable_schema, hypertable_name)::regclass = %s::regclass",
        (table,),
    )
    row = await cur.fetchone()
    if row is None:
        cur = await conn.execute(
            "SELECT add_compression_policy(%s::regclass, %s::interval) AS job_id",
            (table, f"{COMPRESS_AFTER_DAYS} days"),
        )
        row = await cur.fetchone()
        assert row is not None
    return int(row["job_id"])


async def chunk_count(conn: Conn, table: str) -> int:
    """Return how many chunks hypertable `table` has."""
    cur = await conn.execute("SELECT count(*) AS n FROM show_chunks(%s::regclass)", (table,))
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def run_job(conn: Conn, job_id: int) -> None:
    """Run TimescaleDB job `job_id` now, in this session (needs autocommit)."""
    await conn.execute("CALL run_job(%s)", (job_id,))
