"""`DataSyncService`: every stream of an account, with run history and post-sync refreshes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from klaviyo_analytics import klaviyo as k
from klaviyo_analytics.db.pool import Conn, Database
from klaviyo_analytics.db.repos.aggregates import AggregateRepository
from klaviyo_analytics.db.repos.campaigns import CampaignMessageRepository
from klaviyo_analytics.db.repos.metrics import MetricRepository
from klaviyo_analytics.db.repos.sync_state import (
    StreamState,
    SyncRunRepository,
    SyncStateRepository,
)
from klaviyo_analytics.errors import KlaviyoAnalyticsError
from klaviyo_analytics.sync import streams
from klaviyo_analytics.sync.events import EventSyncOptions, EventWindows, close
from klaviyo_analytics.sync.progress import RunCounters
from klaviyo_analytics.sync.state import (
    EVENTS_STREAM,
    Window,
    forget_windows,
    load_windows,
    plan,
    removable,
    save_windows,
)

logger = logging.getLogger(__name__)

# The hook run after events changed: (connection, earliest, latest event time, store zone).
EventsChanged = Callable[[Conn, datetime, datetime, str], Awaitable[None]]
STREAMS = (
    "metrics",
    "campaigns",
    "flows",
    "lists",
    "segments",
    "forms",
    "profiles",
    "events",
    "reports",
)
REFRESH_CHUNK = timedelta(days=31)

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


@dataclass(frozen=True)
class SyncOptions:
    """How a sync behaves; the composition root builds it from the settings."""

    events: EventSyncOptions = field(default_factory=EventSyncOptions)
    default_backfill_days: int = 365
    archive_raw: bool = False
    timezone: str | None = None


async def refresh_aggregates(conn: Conn, lo: datetime, hi: datetime, timezone: str) -> None:
    """Bring the pre-aggregates of every bucket touching [lo, hi] up to date."""
    await AggregateRepository().refresh(conn, start=lo, end=hi, timezone=timezone)


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

    async def sync_metrics(self) -> StreamResult:
        """Copy the account's metrics."""
        return await self._run("metrics", lambda ctx: streams.sync_metrics(ctx))

    async def sync_profiles(self, *, full: bool = False) -> StreamResult:
        """Copy profiles updated since the last run (all of them with `full`)."""
        return await self._run("profiles", lambda ctx: streams.sync_profiles(ctx, full=full))

    async def sync_campaigns(self) -> StreamResult:
        """Copy email and SMS campaigns with their messages."""
        return await self._run("campaigns", lambda ctx: streams.sync_campaigns(ctx))

    async def sync_flows(self) -> StreamResult:
        """Copy flows with their actions and messages."""
        return await self._run("flows", lambda ctx: streams.sync_flows(ctx))

    async def sync_lists(self) -> StreamResult:
        """Copy lists."""
        return await self._run("lists", lambda ctx: streams.sync_lists(ctx))

    async def sync_segments(self) -> StreamResult:
        """Copy segments with their profile counts."""
        return await self._run("segments", lambda ctx: streams.sync_segments(ctx))

    async def sync_forms(self) -> StreamResult:
        """Copy signup forms."""
        return await self._run("forms", lambda ctx: streams.sync_forms(ctx))

    async def sync_reports(self) -> StreamResult:
        """Fetch Klaviyo's campaign and flow reports within the daily quota."""

        async def body(ctx: streams.StreamContext) -> None:
            metric = await self.db.run(lambda c: MetricRepository().find_by_name(c, "Placed Order"))
            await streams.sync_reports(ctx, conversion_metric_id=metric[0].id if metric else None)

        return await self._run("reports", body)

    async def sync_events(
        self, *, since: datetime | None = None, until: datetime | None = None, full: bool = False
    ) -> StreamResult:
        """Copy events: a backfill on the first run (from `since`, or the oldest event), then
        incrementally from the newest stored event. `full` forgets the state and starts over.
        """

        async def body(ctx: streams.StreamContext) -> None:
            end = _second(until or self.clock())
            if full:
                await self.db.run(lambda c: _state.clear(c, EVENTS_STREAM))
            existing = await self.db.run(load_windows)
            start = since
            if start is None and not existing:
                start = await self._oldest_event() or end - timedelta(
                    days=self.options.default_backfill_days
                )
            await self._run_windows(ctx, existing, since=start or end, until=end)

        return await self._run(EVENTS_STREAM, body)

    async def sync_recent_events(self, hours: int = 24) -> StreamResult:
        """Re-read the last `hours` of events, catching events Klaviyo recorded late."""
        if hours < 1:
            raise ValueError(f"hours must be at least 1, got {hours}")

        async def body(ctx: streams.StreamContext) -> None:
            end = _second(self.clock())
            start = end - timedelta(hours=hours)
            existing = await self.db.run(load_windows)
            recent = Window(
                start,
                end,
                cursor=next((w.cursor for w in existing if w.key == Window(start, end).key), None),
            )
            await self.db.run(lambda c: save_windows(c, [recent]))
            await self._execute_windows(ctx, [recent])

        return await self._run(EVENTS_STREAM, body)

    async def sync_all(
        self, *, since: datetime | None = None, full: bool = False
    ) -> list[StreamResult]:
        """Run every stream in dependency order; failed streams do not stop the others.

        Raises KlaviyoError before any work when the key is refused, and SyncFailedError at
        the end when a stream failed.
        """
        await self.check_access()
        results: list[StreamResult] = []
        failures: list[str] = []
        steps: list[tuple[str, Callable[[], Awaitable[StreamResult]]]] = [
            ("metrics", self.sync_metrics),
            ("campaigns", self.sync_campaigns),
            ("flows", self.sync_flows),
            ("lists", self.sync_lists),
            ("segments", self.sync_segments),
            ("forms", self.sync_forms),
            ("profiles", lambda: self.sync_profiles(full=full)),
            ("events", lambda: self.sync_events(since=since, full=full)),
            ("reports", self.sync_reports),
        ]
        for name, step in steps:
            try:
                results.append(await step())
            except (KlaviyoAnalyticsError, OSError) as exc:
                failures.append(f"{name}: {exc}")
                if isinstance(exc, k.KlaviyoAuthenticationError | k.KlaviyoPermissionError):
                    break
        if failures:
            raise SyncFailedError("sync failed for " + "; ".join(failures))
        return results

    async def run_stream(
        self, stream: str, *, since: datetime | None = None, full: bool = False
    ) -> list[StreamResult]:
        """Run one stream by name, or every stream for "all".

        Raises ValueError for an unknown stream name.
        """
        if stream == "all":
            return await self.sync_all(since=since, full=full)
        if stream not in STREAMS:
            raise ValueError(f"unknown stream {stream!r}; choose one of: all, {', '.join(STREAMS)}")
        await self.check_access()
        if stream == "events":
            return [await self.sync_events(since=since, full=full)]
        if stream == "profiles":
            return [await self.sync_profiles(full=full)]
        method: Callable[[], Awaitable[StreamResult]] = getattr(self, f"sync_{stream}")
        return [await method()]

    # -- internals ---------------------------------------------------------------------------

    async def _run(
        self, stream: str, body: Callable[[streams.StreamContext], Awaitable[None]]
    ) -> StreamResult:
        counters = RunCounters(stream, listener=self.listener)
        counters.run_id = await self.db.run(lambda c: _runs.start(c, stream))
        self.active[stream] = counters
        before = self.client.stats.snapshot()
        started = time.monotonic()
        status, error = "succeeded", None
        ctx = streams.StreamContext(self.db, self.client, counters, self.options.archive_raw)
        try:
            await body(ctx)
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

    async def _oldest_event(self) -> datetime | None:
        pages = self.client.iter_events(include=())
        try:
            async for page in pages:
                return page.records[0].datetime if page.records else None
        finally:
            await close(pages)
        return None

    async def _run_windows(
        self,
        ctx: streams.StreamContext,
        existing: list[Window],
        *,
        since: datetime,
        until: datetime,
    ) -> None:
        to_write, to_run = plan(existing, since=since, until=until, size=self.options.events.window)
        if existing and since < min(w.start for w in existing):
            # An earlier --since extends the history backwards.
            earlier, _ = plan(
                [],
                since=since,
                until=min(w.start for w in existing),
                size=self.options.events.window,
            )
            to_write += earlier
            to_run = sorted(to_run + earlier, key=lambda w: w.start)
        await self.db.run(lambda c: save_windows(c, to_write))
        await self._execute_windows(ctx, to_run)

    async def _execute_windows(self, ctx: streams.StreamContext, windows: list[Window]) -> None:
        campaign_of_message = await self.db.run(CampaignMessageRepository().campaign_of_message)
        engine = EventWindows(
            self.db,
            self.client,
            ctx.counters,
            options=self.options.events,
            campaign_of_message=campaign_of_message,
        )
        await engine.run(windows)
        await self._refresh_dirty()

    async def _refresh_dirty(self) -> None:
        """Run the after-events hooks over every dirty range, then mark them clean and drop
        finished windows that no resume needs, all in one transaction."""
        zone = await self.timezone()

        async def work(conn: Conn) -> None:
            windows = await load_windows(conn)
            dirty = [w for w in windows if w.dirty_lo is not None and w.dirty_hi is not None]
            for lo, hi in _merge([(w.dirty_lo, w.dirty_hi) for w in dirty]):  # type: ignore[misc]
                chunk = lo
                while chunk <= hi:
                    upper = min(hi, chunk + REFRESH_CHUNK)
                    for hook in self.after_events:
                        await hook(conn, chunk, upper, zone)
                    chunk = upper + timedelta(microseconds=1)
            cleaned = {w.key: replace(w, dirty_lo=None, dirty_hi=None) for w in dirty}
            await save_windows(conn, cleaned.values())
            await forget_windows(conn, removable([cleaned.get(w.key, w) for w in windows]))

        await self.db.run(work)

    async def timezone(self) -> str:
        """Return the store's time zone: the configured one, the account's, or UTC."""
        if self.options.timezone:
            return self.options.timezone
        saved = await self.db.run(lambda c: _state.get(c, "account", ""))
        zone = saved.state.get("timezone") if saved else None
        return str(zone) if zone else "UTC"


def _merge(ranges: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def _second(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)
