"""Incremental sync state (cursors per stream and partition) and the history of sync runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, LiteralString

from psycopg.types.json import Jsonb

from klaviyo_analytics.db.repos.base import Conn, Repository


@dataclass(frozen=True, slots=True)
class StreamState:
    """Where a stream (or one partition of it, such as a backfill window) stopped."""

    stream: str
    partition: str = ""
    cursor_value: str | None = None
    state: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SyncRun:
    """One run of one stream, as recorded in the history."""

    id: int
    stream: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    rows: dict[str, int]
    api_calls: int
    retries: int
    rate_limited: int
    errors: int
    quarantined: int
    error_message: str | None
    duration_ms: int | None


RUN_COLUMNS: LiteralString = (
    "id, stream, status, started_at, finished_at, rows, api_calls, retries, rate_limited, errors,"
    " quarantined, error_message, duration_ms"
)


class SyncStateRepository(Repository[StreamState]):
    """Cursors: moved in the same transaction as the rows they cover."""

    def __init__(self) -> None:
        super().__init__("sync_state", StreamState, ("stream", "partition"), touched="updated_at")

    async def partitions(self, conn: Conn, stream: str) -> list[StreamState]:
        """Return every partition's state of a stream."""
        return await self.find_by(conn, "stream", stream, limit=100_000)

    async def clear(self, conn: Conn, stream: str) -> int:
        """Forget a stream's state (a full re-sync); return how many partitions were dropped."""
        cur = await conn.execute("DELETE FROM sync_state WHERE stream = %s", (stream,))
        return cur.rowcount


class SyncRunRepository:
    """The history of sync runs, and the quarantine of records that failed validation."""

    async def start(self, conn: Conn, stream: str) -> int:
        """Record a run as started; return its id."""
        cur = await conn.execute(
            "INSERT INTO sync_runs (stream, status) VALUES (%s, 'running') RETURNING id", (stream,)
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row["id"])

    async def finish(
        self,
        conn: Conn,
        run_id: int,
        *,
        status: str,
        rows: dict[str, int],
        api_calls: int,
        retries: int,
        rate_limited: int,
        errors: int,
        quarantined: int,
        error_message: str | None = None,
    ) -> None:
        """Record a run's end, its counts and (on failure) its error."""
        await conn.execute(
            "UPDATE sync_runs SET status = %s, finished_at = now(), rows = %s, api_calls = %s,"
            " retries = %s, rate_limited = %s, errors = %s, quarantined = %s, error_message = %s,"
            " duration_ms = (extract(epoch FROM now() - started_at) * 1000)::bigint WHERE id = %s",
            (
                status,
                Jsonb(rows),
                api_calls,
                retries,
                rate_limited,
                errors,
                quarantined,
                error_message,
                run_id,
            ),
        )

    async def get(self, conn: Conn, run_id: int) -> SyncRun | None:
        """Return one run, or None."""
        cur = await conn.execute(
            "SELECT " + RUN_COLUMNS + " FROM sync_runs WHERE id = %s", (run_id,)
        )
        row = await cur.fetchone()
        return SyncRun(**row) if row else None

    async def recent(
        self, conn: Conn, *, stream: str | None = None, limit: int = 50
    ) -> list[SyncRun]:
        """Return the newest runs first, optionally of one stream."""
        cur = await conn.execute(
            "SELECT "
            + RUN_COLUMNS
            + " FROM sync_runs WHERE (%(s)s::text IS NULL OR stream = %(s)s)"
            " ORDER BY started_at DESC, id DESC LIMIT %(n)s",
            {"s": stream, "n": limit},
        )
        return [SyncRun(**row) for row in await cur.fetchall()]

    async def last_per_stream(self, conn: Conn) -> list[SyncRun]:
        """Return the newest run of every stream."""
        cur = await conn.execute(
            "SELECT DISTINCT ON (stream) " + RUN_COLUMNS + " FROM sync_runs"
            " ORDER BY stream, started_at DESC, id DESC"
        )
        return [SyncRun(**row) for row in await cur.fetchall()]

    async def quarantine(
        self,
        conn: Conn,
        *,
        run_id: int | None,
        stream: str,
        record_id: str | None,
        reason: str,
        raw: dict[str, Any],
    ) -> None:
        """Keep a record that failed validation, with the reason."""
        await conn.execute(
            "INSERT INTO sync_quarantine (run_id, stream, record_id, reason, raw) VALUES (%s, %s, %s, %s, %s)",
            (run_id, stream, record_id, reason, Jsonb(raw)),
        )

    async def archive(self, conn: Conn, *, endpoint: str, url: str, body: Any) -> None:
        """Keep a fetched page's body as received (retention applies)."""
        await conn.execute(
            "INSERT INTO raw_api_responses (endpoint, url, status, body) VALUES (%s, %s, 200, %s)",
            (endpoint, url, Jsonb(body)),
        )


@dataclass(frozen=True, slots=True)
class Report:
    """One group's statistics from a Klaviyo values or series report."""

    report_type: str
    timeframe: str
    source_id: str
    message_id: str = ""
    channel: str | None = None
    statistics: dict[str, Any] = field(default_factory=dict)
    date_times: list[str] | None = None


class ReportRepository(Repository[Report]):
    """Reporting API results."""

    def __init__(self) -> None:
        super().__init__(
            "klaviyo_reports",
            Report,
            ("report_type", "timeframe", "source_id", "message_id"),
            touched="fetched_at",
        )
