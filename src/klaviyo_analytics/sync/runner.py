"""`DataSyncService`: runs the registry's streams of an account, with run history and the
refresh of what each run dirtied."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from klaviyo_analytics import klaviyo as k
from klaviyo_analytics.db.pool import Conn, Database
from klaviyo_analytics.db.repos.aggregates import AggregateRepository
from klaviyo_analytics.db.repos.sync_state import (
    StreamState,
    SyncRunRepository,
    SyncStateRepository,
)
from klaviyo_analytics.errors import KlaviyoAnalyticsError
from klaviyo_analytics.sync import backfill, registry
from klaviyo_analytics.sync.context import EventsChanged, RunArgs, StreamContext, SyncOptions
from klaviyo_analytics.sync.progress import RunCounters
from klaviyo_analytics.sync.registry import STREAMS
from klaviyo_analytics.sync.state import EVENTS_STREAM

__all__ = [
    "STREAMS",
    "DataSyncService",
    "EventsChanged",
    "StreamResult",
    "SyncFailedError",
    "SyncOptions",
    "refresh_aggregates",
]

logger = logging.getLogger(__name__)


_runs = SyncRunRepository()
_state = SyncStateRepository()


class SyncFailedError(KlaviyoAnalyticsError):
    """One or more streams of a sync failed; their runs are recorded with the error."""


@dataclass(frozen=True)
class StreamResult:
    """What one stream's run did."""

    stream: str
    run_id: int
    status: str
    rows: dict[str, int]
    fetched: int
    pages: int
    quarantined: int
    api_calls: int
    retries: int
    rate_limited: int
    errors: int
    duration_s: float
    error: str | None = None


# The longest range one aggregate refresh statement covers (it stays under the statement
# timeout on a large store); a bucket on a boundary is recomputed by both neighbours.
AGGREGATE_CHUNK = timedelta(days=31)


async def refresh_aggregates(conn: Conn, lo: datetime, hi: datetime, timezone: str) -> None:
    """Bring the pre-aggregates of every bucket touching [lo, hi] up to date, a month at a
    time."""
    repo = AggregateRepository()
    start = lo
    while start <= hi:
        end = min(hi, start + AGGREGATE_CHUNK)
        await repo.refresh(conn, start=start, end=end, timezone=timezone)
        start = end + timedelta(microseconds=1)


class DataSyncService:
    """Sync a Klaviyo account into the database, stream by stream."""

    def __init__(
        self,
        db: Database,
        client: k.KlaviyoClient,
        *,
        options: SyncOptions | None = None,
        after_events: Sequence[EventsChanged] = (refresh_aggregates,),
        on_change: Callable[[str], None] | None = None,
        listener: Callable[[RunCounters], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """Wire the service; `clock` says what "now" is (the end of every event sync)."""
        self.clock = clock
        self.db = db
        self.client = client
        self.options = options or SyncOptions()
        self.after_events = list(after_events)
        self.on_change = on_change
        self.listener = listener
        self.active: dict[str, RunCounters] = {}
        self.results: list[StreamResult] = []

    # -- streams -----------------------------------------------------------------------------

    async def check_access(self) -> k.Account:
        """Fetch the account, proving the key works, and remember its time zone and currency.

        Raises KlaviyoAuthenticationError (and other KlaviyoError subclasses) before any work.
        """
        account = await self.client.get_account()
        state = StreamState(
            "account",
            "",
            None,
            {
                "id": account.id,
                "timezone": getattr(account, "timezone", None),
                "currency": getattr(account, "preferred_currency", None),
                "name": getattr(account, "organization_name", None),
            },
        )
        await self.db.run(lambda c: _state.upsert(c, state))
        return account

    async def run(
        self,
        name: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        full: bool = False,
    ) -> StreamResult:
        """Run one stream (see `registry`), record the run, then refresh what it dirtied.

        `since`/`until` bound the events stream's run; `full` re-reads from scratch.
        Raises ValueError for an unknown stream, and the stream's own error when it fails.
        """
        return await self._run(registry.stream(name), RunArgs(since=since, until=until, full=full))

    async def sync_recent_events(self, hours: int = 24) -> StreamResult:
        """Re-read the last `hours` of events, catching events Klaviyo recorded late."""
        if hours < 1:
            raise ValueError(f"hours must be at least 1, got {hours}")
        return await self._run(registry.stream(EVENTS_STREAM), RunArgs(recent_hours=hours))

    async def sync_all(
        self, *, since: datetime | None = None, full: bool = False
    ) -> list[StreamResult]:
        """Run every stream in the registry's dependency order; failed streams do not stop the
        others.

        Raises KlaviyoError before any work when the key is refused, and SyncFailedError at
        the end when a stream failed.
        """
        await self.check_access()
        results: list[StreamResult] = []
        failures: list[str] = []
        for spec in registry.REGISTRY:
            try:
                results.append(await self._run(spec, RunArgs(since=since, full=full)))
            except (KlaviyoAnalyticsError, OSError) as exc:
                failures.append(f"{spec.name}: {exc}")
                if isinstance(exc, k.KlaviyoAuthenticationError | k.KlaviyoPermissionError):
                    break
        if failures:
            raise SyncFailedError("sync failed for " + "; ".join(failures))
        return results

    async def run_stream(
        self, stream: str, *, since: datetime | None = None, full: bool = False
    ) -> list[StreamResult]:
        """Run one stream by name, or every stream for "all", after checking the key.

        Raises ValueError for an unknown stream name.
        """
        if stream == "all":
            return await self.sync_all(since=since, full=full)
        spec = registry.stream(stream)
        await self.check_access()
        return [await self._run(spec, RunArgs(since=since, full=full))]

    # -- internals ---------------------------------------------------------------------------

    async def _run(self, spec: registry.Stream, args: RunArgs) -> StreamResult:
        stream = spec.name
        counters = RunCounters(stream, listener=self.listener)
        counters.run_id = await self.db.run(lambda c: _runs.start(c, stream))
        self.active[stream] = counters
        before = self.client.stats.snapshot()
        started = time.monotonic()
        status, error = "succeeded", None
        ctx = StreamContext(self.db, self.client, counters, self.options, self.clock,
                            self.after_events, self.timezone)  # fmt: skip
        try:
            await spec.run(ctx, args)
            if spec.refreshes:
                await backfill.refresh_dirty(ctx)
        except asyncio.CancelledError:
            status, error = "cancelled", "the run was cancelled"
            raise
        except Exception as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            logger.error("sync of %s failed: %s", stream, error)
            raise
        finally:
            self.active.pop(stream, None)
            after = self.client.stats.snapshot()
            result = StreamResult(
                stream=stream,
                run_id=counters.run_id,
                status=status,
                rows=dict(counters.rows),
                fetched=counters.fetched,
                pages=counters.pages,
                quarantined=counters.quarantined,
                api_calls=after.api_calls - before.api_calls,
                retries=after.retries - before.retries,
                rate_limited=after.rate_limited - before.rate_limited,
                errors=after.errors - before.errors,
                duration_s=time.monotonic() - started,
                error=error,
            )
            self.results.append(result)
            await asyncio.shield(self._record(result))
        if self.on_change is not None:
            self.on_change(stream)
        return result

    async def _record(self, r: StreamResult) -> None:
        await self.db.run(
            lambda c: _runs.finish(
                c,
                r.run_id,
                status=r.status,
                rows=r.rows,
                api_calls=r.api_calls,
                retries=r.retries,
                rate_limited=r.rate_limited,
                errors=r.errors,
                quarantined=r.quarantined,
                error_message=r.error,
            )
        )

    async def timezone(self) -> str:
        """Return the store's time zone: the configured one, the account's, or UTC."""
        if self.options.timezone:
            return self.options.timezone
        saved = await self.db.run(lambda c: _state.get(c, "account", ""))
        zone = saved.state.get("timezone") if saved else None
        return str(zone) if zone else "UTC"
