"""Klaviyo events: the time-partitioned fact stream, keyed by (id, timestamp)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg import sql

from klaviyo_analytics.db.repos.base import Conn, Repository


@dataclass(frozen=True, slots=True)
class Event:
    """One event; `value` is Placed Order's `$value` and the like (negative for refunds)."""

    id: str
    timestamp: datetime
    metric_id: str
    profile_id: str | None = None
    value: Decimal | None = None
    uuid: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    attributed_source_type: str | None = None
    attributed_source_id: str | None = None
    attributed_message_id: str | None = None


class EventRepository(Repository[Event]):
    """Events; a batch upsert first creates stub profiles and metrics that it refers to."""

    def __init__(self, *, references_ensured: bool = False) -> None:
        """`references_ensured=True` is for a caller that runs `ensure_references` for every
        batch before writing it (as the sync does): the batch upsert then skips creating stubs,
        which would find nothing left to create."""
        # Rows are merged in TimescaleDB's compressed order (segment, then time descending): a
        # write into a compressed chunk decompresses each batch it touches and holds it to
        # commit, so concurrent writers must take batches in one order or they deadlock.
        super().__init__(
            "klaviyo_events",
            Event,
            ("id", "timestamp"),
            skip_unchanged=True,
            bounded_by="timestamp",
            merge_order=(("metric_id", False), ("timestamp", True), ("id", False)),
        )
        self._references_ensured = references_ensured

    async def before_write(self, conn: Conn, records: Sequence[Event]) -> None:
        """Create the partitions and the stub profiles and metrics a batch needs (unless the
        caller ensured them, see `__init__`)."""
        if self._references_ensured:
            return
        times = [e.timestamp for e in records]
        await self.ensure_partitions(conn, min(times), max(times))
        await self.ensure_references(conn, records)

    async def ensure_partitions(self, conn: Conn, start: datetime, end: datetime) -> int:
        """Create the partitions (or TimescaleDB chunks) that [start, end] needs; return how many.

        Run in a short transaction of its own before the events are written: creating one adds
        foreign keys, which lock klaviyo_metrics and klaviyo_profiles (in that order, taken up
        front), and a long writer holding locks there meanwhile would deadlock with it.
        Concurrent callers serialise only when something is missing (migrations 0014, 0019).
        """
        cur = await conn.execute(
            "SELECT ka_ensure_partitions('klaviyo_events', %s, %s) AS n", (start, end)
        )
        row = await cur.fetchone()
        return int(row["n"]) if row else 0

    async def ensure_references(self, conn: Conn, events: Sequence[Event]) -> None:
        """Create stub profiles and metrics for a batch ahead of writing it.

        Run in a short transaction of its own, this keeps stub-row locks out of the long
        transaction that writes the events, so concurrent writers do not queue behind it.
        """
        profiles = sorted({e.profile_id for e in events if e.profile_id is not None})
        metrics = sorted({e.metric_id for e in events})
        # Metrics before profiles, the order in which partition creation locks the two tables
        # (see migration 0019): an INSERT locks its table even when it inserts nothing.
        await conn.execute(
            "INSERT INTO klaviyo_metrics (id, name) SELECT m, m FROM unnest(%s::text[]) AS m"
            " WHERE NOT EXISTS (SELECT 1 FROM klaviyo_metrics WHERE id = m)"
            " ORDER BY 1 ON CONFLICT (id) DO NOTHING",
            (metrics,),
        )
        await conn.execute(
            "INSERT INTO klaviyo_profiles (id, is_stub) SELECT p, true FROM unnest(%s::text[]) AS p"
            " WHERE NOT EXISTS (SELECT 1 FROM klaviyo_profiles WHERE id = p)"
            " ORDER BY 1 ON CONFLICT (id) DO NOTHING",
            (profiles,),
        )

    async def find_by_metric(
        self, conn: Conn, metric_id: str, start: datetime, end: datetime, *, limit: int = 1000
    ) -> list[Event]:
        """Return events of a metric with start <= timestamp < end, oldest first."""
        cur = await conn.execute(
            sql.SQL(
                'SELECT {cols} FROM klaviyo_events WHERE metric_id = %s AND "timestamp" >= %s'
                ' AND "timestamp" < %s ORDER BY "timestamp", id LIMIT %s'
            ).format(cols=self._cols()),
            (metric_id, start, end, limit),
        )
        return [Event(**row) for row in await cur.fetchall()]

    async def find_by_profile(
        self, conn: Conn, profile_id: str, *, limit: int = 1000
    ) -> list[Event]:
        """Return a profile's events, newest first."""
        cur = await conn.execute(
            sql.SQL(
                "SELECT {cols} FROM klaviyo_events WHERE profile_id = %s"
                ' ORDER BY "timestamp" DESC, id LIMIT %s'
            ).format(cols=self._cols()),
            (profile_id, limit),
        )
        return [Event(**row) for row in await cur.fetchall()]

    async def iter_range(
        self, conn: Conn, start: datetime, end: datetime, *, metric_id: str | None = None
    ) -> AsyncIterator[Event]:
        """Stream events with start <= timestamp < end through a server-side cursor."""
        query = sql.SQL(
            'SELECT {cols} FROM klaviyo_events WHERE "timestamp" >= %s AND "timestamp" < %s'
            ' AND (%s::text IS NULL OR metric_id = %s) ORDER BY "timestamp", id'
        ).format(cols=self._cols())
        async with conn.cursor(name="klaviyo_events_range") as cur:
            await cur.execute(query, (start, end, metric_id, metric_id))
            async for row in cur:
                yield Event(**row)

    async def count_by_metric(
        self, conn: Conn, start: datetime | None = None, end: datetime | None = None
    ) -> dict[str, int]:
        """Return the number of events per metric id in [start, end) (all time by default)."""
        cur = await conn.execute(
            "SELECT metric_id, count(*) AS n FROM klaviyo_events"
            ' WHERE (%(start)s::timestamptz IS NULL OR "timestamp" >= %(start)s)'
            ' AND (%(end)s::timestamptz IS NULL OR "timestamp" < %(end)s) GROUP BY metric_id',
            {"start": start, "end": end},
        )
        return {row["metric_id"]: int(row["n"]) for row in await cur.fetchall()}

    async def latest_timestamp(self, conn: Conn, metric_id: str | None = None) -> datetime | None:
        """Return the newest stored event time (of one metric, or of all).

        An unbounded `max()` plans every partition or chunk of the table: 20 ms warm and
        80 ms on a new connection with 71 compressed TimescaleDB chunks at 1 M events, and
        it grows with the history. The newest aggregate bucket's start is at or before the
        newest event it counts, so the newest event is first sought from there (the bound
        is a parameter, so only the newest chunks are planned); only when nothing is found
        there (aggregates older than the events, or their events deleted) is the whole
        table asked.
        """
        params = {"m": metric_id}
        cur = await conn.execute(
            "SELECT max(bucket_start) AS b FROM klaviyo_aggregated_metrics"
            " WHERE (%(m)s::text IS NULL OR metric_id = %(m)s)",
            params,
        )
        row = await cur.fetchone()
        if row is not None and row["b"] is not None:
            cur = await conn.execute(
                'SELECT max("timestamp") AS t FROM klaviyo_events WHERE "timestamp" >= %(b)s'
                " AND (%(m)s::text IS NULL OR metric_id = %(m)s)",
                {**params, "b": row["b"]},
            )
            found = await cur.fetchone()
            if found is not None and found["t"] is not None:
                return found["t"]  # type: ignore[no-any-return]
        cur = await conn.execute(
            'SELECT max("timestamp") AS t FROM klaviyo_events'
            " WHERE (%(m)s::text IS NULL OR metric_id = %(m)s)",
            params,
        )
        row = await cur.fetchone()
        return row["t"] if row else None
