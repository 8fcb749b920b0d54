"""Read-only queries for operations: health checks, Prometheus figures, the API's bookkeeping."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from klaviyo_analytics.db.repos.base import Conn
from klaviyo_analytics.db.repos.sync_state import RUN_COLUMNS, SyncRun


@dataclass(frozen=True, slots=True)
class SyncTotals:
    """Totals over the run history of one stream and status."""

    stream: str
    status: str
    runs: int
    records: int
    api_calls: int
    errors: int
    rate_limited: int


@dataclass(frozen=True, slots=True)
class Replication:
    """Replication as this server sees it: standby replay lag, or the standbys of a primary."""

    in_recovery: bool
    replay_lag_s: float | None
    standbys: int
    max_standby_lag_s: float | None


@dataclass(frozen=True, slots=True)
class MetricName:
    """A metric as listed by the API."""

    id: str
    name: str
    integration: str | None


async def sync_totals(conn: Conn) -> list[SyncTotals]:
    """Return run counts, records written, calls, errors and 429s per stream and status."""
    cur = await conn.execute(
        "SELECT stream, status, count(*) AS runs,"
        " coalesce(sum((SELECT coalesce(sum(v::bigint), 0) FROM jsonb_each_text(rows) AS r(k, v))),"
        " 0)::bigint AS records,"
        " coalesce(sum(api_calls), 0)::bigint AS api_calls,"
        " coalesce(sum(errors), 0)::bigint AS errors,"
        " coalesce(sum(rate_limited), 0)::bigint AS rate_limited"
        " FROM sync_runs GROUP BY stream, status ORDER BY stream, status"
    )
    return [SyncTotals(**row) for row in await cur.fetchall()]


async def last_success(conn: Conn, stream: str | None = None) -> datetime | None:
    """Return when the newest successful run (of one stream, or of any) finished."""
    cur = await conn.execute(
        "SELECT max(finished_at) AS at FROM sync_runs WHERE status = 'succeeded'"
        " AND (%(s)s::text IS NULL OR stream = %(s)s)",
        {"s": stream},
    )
    row = await cur.fetchone()
    return row["at"] if row else None


async def runs_page(
    conn: Conn, *, stream: str | None, status: str | None, limit: int, offset: int
) -> tuple[list[SyncRun], int]:
    """Return one page of the run history (newest first) and the number of matching runs."""
    params = {"s": stream, "st": status, "n": limit, "o": offset}
    where = (
        " WHERE (%(s)s::text IS NULL OR stream = %(s)s)"
        " AND (%(st)s::text IS NULL OR status = %(st)s)"
    )
    cur = await conn.execute(
        "SELECT " + RUN_COLUMNS + " FROM sync_runs" + where + " ORDER BY started_at DESC, id DESC"
        " LIMIT %(n)s OFFSET %(o)s",
        params,
    )
    runs = [SyncRun(**row) for row in await cur.fetchall()]
    cur = await conn.execute("SELECT count(*) AS n FROM sync_runs" + where, params)
    row = await cur.fetchone()
    return runs, int(row["n"]) if row else 0


async def replication(conn: Conn) -> Replication:
    """Return the replay lag of a standby, or the number and worst lag of a primary's standbys.

    Lag columns of pg_stat_replication are NULL for roles without pg_monitor; then the lag is
    unknown (None), not zero.
    """
    cur = await conn.execute(
        "SELECT pg_is_in_recovery() AS in_recovery,"
        " extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS replay_lag_s"
    )
    row = await cur.fetchone()
    assert row is not None
    cur = await conn.execute(
        "SELECT count(*) AS n, max(extract(epoch FROM replay_lag))::float8 AS lag"
        " FROM pg_stat_replication"
    )
    standby = await cur.fetchone()
    assert standby is not None
    return Replication(
        in_recovery=bool(row["in_recovery"]),
        replay_lag_s=row["replay_lag_s"] if row["in_recovery"] else None,
        standbys=int(standby["n"]),
        max_standby_lag_s=standby["lag"],
    )


async def has_events_between(conn: Conn, lo: datetime, hi: datetime) -> bool:
    """Say whether any event was stored in [lo, hi)."""
    cur = await conn.execute(
        'SELECT EXISTS (SELECT 1 FROM klaviyo_events WHERE "timestamp" >= %s'
        ' AND "timestamp" < %s) AS found',
        (lo, hi),
    )
    row = await cur.fetchone()
    return bool(row and row["found"])


async def events_synced_through(conn: Conn) -> datetime | None:
    """Return when the newest successful events run started (its history reaches that far)."""
    cur = await conn.execute(
        "SELECT max(started_at) AS at FROM sync_runs WHERE stream = 'events'"
        " AND status = 'succeeded'"
    )
    row = await cur.fetchone()
    return row["at"] if row else None


async def oldest_event(conn: Conn) -> datetime | None:
    """Return the time of the oldest stored event."""
    cur = await conn.execute('SELECT min("timestamp") AS at FROM klaviyo_events')
    row = await cur.fetchone()
    return row["at"] if row else None


async def metric_names(conn: Conn) -> list[MetricName]:
    """Return every metric with its integration, by name."""
    cur = await conn.execute(
        "SELECT id, name, integration_name AS integration FROM klaviyo_metrics ORDER BY name, id"
    )
    return [MetricName(**row) for row in await cur.fetchall()]


async def metric_ids(conn: Conn, name: str) -> list[str]:
    """Return the ids of the metrics with this name."""
    cur = await conn.execute("SELECT id FROM klaviyo_metrics WHERE name = %s ORDER BY id", (name,))
    return [row["id"] for row in await cur.fetchall()]


async def without_statement_timeout(conn: Conn) -> None:
    """Lift the statement timeout for the rest of the caller's transaction (maintenance work)."""
    await conn.execute("SET LOCAL statement_timeout = 0")
