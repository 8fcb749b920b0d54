"""The event stream: a backfill split into windows fetched concurrently, and incremental runs.

Every page is written in one transaction together with its window's new cursor, so a crash at
any point loses nothing and a re-run duplicates nothing. Workers share the client's rate
limiter, so enough windows in flight keep the events endpoint near its limit. A window that
turns out to be dense (a holiday, a big send) is split, so one day never runs alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from klaviyo_analytics import klaviyo as k
from klaviyo_analytics.db.partitions import is_partitioned
from klaviyo_analytics.db.pool import Conn, Database
from klaviyo_analytics.db.repos.events import EventRepository
from klaviyo_analytics.sync import mapping
from klaviyo_analytics.sync.pages import store_page
from klaviyo_analytics.sync.progress import RunCounters
from klaviyo_analytics.sync.state import Window, save_windows, saving, split_evenly

logger = logging.getLogger(__name__)
# Every page's stub profiles and metrics are created by `ensure_references` just before it
# (for the ids this run has not made sure of yet).
_events = EventRepository(references_ensured=True)
# How many profile ids a run remembers as made sure of (~10 MB); then it starts over.
_KNOWN_IDS_MAX = 100_000


@dataclass(frozen=True)
class EventSyncOptions:
    """How the event stream is fetched."""

    concurrency: int = 16
    window: timedelta = timedelta(days=1)
    # Split a window when more than this many pages are estimated to remain in it.
    split_pages: int = 3
    max_split: int = 8
    min_window: timedelta = timedelta(minutes=10)
    archive_raw: bool = False


class EventWindows:
    """Fetch a set of windows with a pool of workers; new windows may be added while running."""

    def __init__(
        self,
        db: Database,
        client: k.KlaviyoClient,
        counters: RunCounters,
        *,
        options: EventSyncOptions,
        campaign_of_message: Mapping[str, str],
    ) -> None:
        self._db = db
        self._client = client
        self._counters = counters
        self._options = options
        self._campaign_of_message = campaign_of_message
        self._queue: asyncio.Queue[Window] = asyncio.Queue()
        self._partitions = KnownMonths()
        # Metric and profile ids whose rows (real or stub) this run has made sure exist.
        self._metrics: set[str] = set()
        self._profiles: set[str] = set()
        self._busy = 0
        self.windows: dict[str, Window] = {}

    async def run(self, windows: list[Window]) -> None:
        """Fetch every window to its end; raise the first failure after stopping the others."""
        if await self._db.run(lambda conn: is_partitioned(conn, "klaviyo_events")):
            self._partitions = KnownMonths(monthly=True)
        for window in windows:
            self._add(window)
        workers = [asyncio.create_task(self._worker()) for _ in range(self._options.concurrency)]
        joiner = asyncio.create_task(self._queue.join())
        try:
            done, _ = await asyncio.wait([joiner, *workers], return_when=asyncio.FIRST_COMPLETED)
            failed = [t for t in done if t is not joiner and t.exception() is not None]
            if failed:
                raise failed[0].exception()  # type: ignore[misc]
        finally:
            for task in [joiner, *workers]:
                task.cancel()
            await asyncio.gather(joiner, *workers, return_exceptions=True)

    def fraction_done(self) -> float:
        """Return the share of the windows' time range already fetched (for progress bars)."""
        total = sum((w.end - w.start).total_seconds() for w in self.windows.values())
        if not total:
            return 1.0
        done = sum(
            (w.end - w.start).total_seconds() * w.fraction_done for w in self.windows.values()
        )
        return done / total

    def _add(self, window: Window) -> None:
        self.windows[window.key] = window
        self._counters.note_progress(self.fraction_done())
        self._queue.put_nowait(window)

    async def _worker(self) -> None:
        while True:
            window = await self._queue.get()
            self._busy += 1
            try:
                await self._fetch(window)
            finally:
                self._busy -= 1
                self._queue.task_done()

    async def _fetch(self, window: Window) -> None:
        """Fetch one window from its cursor to its end, page by page."""
        while not window.done:
            restarted = False
            pages = self._client.iter_events(
                since=window.resume_from,
                until=window.end,
                include=("attributions",),
                keep_raw=self._options.archive_raw,
            )
            try:
                async for page in pages:
                    window = await self._store(window, page)
                    if page.next_url is None:
                        break
                    split = self._split_plan(window, page)
                    if split:
                        window = await self._split(window, split)
                        restarted = True
                        break
            finally:
                await close(pages)
            if not restarted:
                window = replace(window, done=True)
                await self._db.run(saving([window]))
                self.windows[window.key] = window
        self._counters.note_progress(self.fraction_done())

    async def _store(self, window: Window, page: k.Page[k.Event]) -> Window:
        records = [mapping.event(e, self._campaign_of_message) for e in page.records]
        updated = window
        if records:
            times = [r.timestamp for r in records]
            updated = window.stored(min(times), max(times))

        if records:
            lo, hi = min(times), max(times)
            known = self._partitions.covers(lo, hi)
            # Only events naming a metric or profile this run has not made sure of yet need
            # their stubs looked for (rows of klaviyo_metrics and klaviyo_profiles are never
            # deleted while a sync runs).
            metrics, profiles = self._metrics, self._profiles
            unsure = [r for r in records
                      if r.metric_id not in metrics
                      or (r.profile_id is not None and r.profile_id not in profiles)]  # fmt: skip

            async def prepare(conn: Conn) -> None:
                # One short transaction, partitions first: both steps lock klaviyo_metrics
                # before klaviyo_profiles, the order every writer takes them in (migration 0019).
                if not known:
                    await _events.ensure_partitions(conn, lo, hi)
                if unsure:
                    await _events.ensure_references(conn, unsure)

            if unsure or not known:
                await self._db.run(prepare)
            self._partitions.add(lo, hi)
            if len(profiles) > _KNOWN_IDS_MAX:  # bounded memory: forgetting only costs lookups
                profiles.clear()
            metrics.update(r.metric_id for r in unsure)
            profiles.update(r.profile_id for r in unsure if r.profile_id is not None)

        archive_as = "get_events" if self._options.archive_raw else None

        async def write(conn: Conn) -> int:
            changed = await store_page(conn, self._counters, page,
                                       [("klaviyo_events", _events, records)],
                                       archive_as=archive_as)  # fmt: skip
            await save_windows(conn, [updated])
            return changed["klaviyo_events"]

        changed = await self._db.run(write)
        self.windows[updated.key] = updated
        self._counters.add_rows("klaviyo_events", changed, fetched=len(records), pages=1)
        self._counters.note_progress(self.fraction_done())
        return updated

    def _split_plan(self, window: Window, page: k.Page[k.Event]) -> list[tuple[datetime, datetime]]:
        """Return sub-windows for the rest of a dense window, or [] to keep paging.

        Splitting only pays when workers are idle: while every worker has a window, one more
        cursor cannot run anyway, and a split turns full pages into sparse ones (each page
        costs a request). The estimate of pages left comes from the time the last page
        covered; campaign bursts make it high, which is why idle workers bound the split.
        """
        idle = self._options.concurrency - self._busy - self._queue.qsize()
        if idle <= 0 or not page.records or window.cursor is None:
            return []
        covered = (window.cursor - window.resume_from).total_seconds()
        remaining = window.end - window.cursor
        if remaining < self._options.min_window * 2:
            return []
        estimate = remaining.total_seconds() / max(covered, 1.0)
        if estimate <= self._options.split_pages:
            return []
        parts = min(idle + 1, self._options.max_split, int(estimate))
        return split_evenly(window.cursor, window.end, parts)

    async def _split(self, window: Window, pieces: list[tuple[datetime, datetime]]) -> Window:
        """Shrink `window` to the first piece and add windows for the others, in one transaction."""
        first_end = pieces[0][1]
        shrunk = replace(window, end=first_end)
        others = [Window(lo, hi) for lo, hi in pieces[1:]]
        await self._db.run(saving([shrunk, *others]))
        self.windows[shrunk.key] = shrunk
        logger.debug("split window %s into %d pieces", window.key, len(pieces))
        for other in others:
            self._add(other)
        return shrunk


class KnownMonths:
    """The UTC months this run has made sure klaviyo_events has partitions for.

    On plain PostgreSQL the table has one partition per UTC month, and `ka_ensure_partitions`
    only looks each month up and creates the missing ones: a page whose months were all seen
    before needs no call (one statement a page, which looked up pg_class once per month). A
    partition dropped meanwhile (retention runs elsewhere) sends rows to the DEFAULT partition,
    which maintenance empties into their month's partition. With TimescaleDB (`monthly=False`)
    nothing is known and every page asks.
    """

    def __init__(self, *, monthly: bool = False) -> None:
        self._monthly = monthly
        self._months: set[tuple[int, int]] = set()

    def covers(self, lo: datetime, hi: datetime) -> bool:
        """Say whether every month from `lo` to `hi` is known to have its partition."""
        return self._monthly and all(m in self._months for m in _months(lo, hi))

    def add(self, lo: datetime, hi: datetime) -> None:
        """Remember that `ensure_partitions(lo, hi)` succeeded."""
        if self._monthly:
            self._months.update(_months(lo, hi))


def _months(lo: datetime, hi: datetime) -> list[tuple[int, int]]:
    """Return the UTC (year, month) pairs from `lo` to `hi`, both included."""
    first, last = lo.astimezone(UTC), hi.astimezone(UTC)
    year, month = first.year, first.month
    months: list[tuple[int, int]] = []
    while (year, month) <= (last.year, last.month):
        months.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


async def close(iterator: AsyncIterator[Any]) -> None:
    """Close an async generator that was left before its end."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
