"""The events stream's runs: a backfill or an incremental run planned as windows, a catch-up
re-read of recent hours, and afterwards the refresh of every range the run dirtied.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from klaviyo_analytics.db.pool import Conn
from klaviyo_analytics.db.repos.campaigns import CampaignMessageRepository
from klaviyo_analytics.db.repos.sync_state import SyncStateRepository
from klaviyo_analytics.sync.context import EventsChanged, RunArgs, StreamContext
from klaviyo_analytics.sync.events import EventWindows, close
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
# Dirty ranges closer than this are refreshed as one: the windows of a backfill leave a gap
# between the last event of one and the first of the next, and refreshing each on its own
# recomputed every date (and every week bucket) several times, once per neighbouring window.
# A gap of up to a day costs at most one more date.
REFRESH_GAP = timedelta(days=1)
_state = SyncStateRepository()


async def sync_events(ctx: StreamContext, args: RunArgs) -> None:
    """Copy events: a backfill on the first run (from `since`, or the oldest event), then
    incrementally from the newest stored event; `full` forgets the state and starts over;
    `recent_hours` re-reads only that many recent hours (events Klaviyo recorded late).
    """
    end = _second(args.until or ctx.clock())
    if args.recent_hours is not None:
        await _sync_recent(ctx, end, args.recent_hours)
        return
    if args.full:
        await ctx.db.run(lambda c: _state.clear(c, EVENTS_STREAM))
    existing = await ctx.db.run(load_windows)
    start = args.since
    if start is None and not existing:
        start = await _oldest_event(ctx) or end - timedelta(days=ctx.options.default_backfill_days)
    await _run_windows(ctx, existing, since=start or end, until=end)


async def refresh_dirty(ctx: StreamContext) -> None:
    """Run each after-events hook once per merged dirty range, then mark the windows clean and
    drop finished windows that no resume needs.

    A hook gets the whole range and bounds its own statements (chunks of dates or buckets), so
    every date and bucket is recomputed once per run however many windows touched it. The
    hooks write disjoint tables, so each runs in a transaction of its own and all run at once:
    PostgreSQL then uses more than one core for the refresh a user waits for. The windows are
    marked clean in a last transaction, and only those still as they were read: after a crash
    or a failed hook they stay dirty and the next run refreshes their range again (every hook
    recomputes from raw events, so a repeat changes nothing). Raises the first hook's error
    after the others have finished.
    """
    zone = await ctx.store_timezone()
    started = time.monotonic()
    windows = await ctx.db.run(load_windows)
    dirty = [w for w in windows if w.dirty_lo is not None and w.dirty_hi is not None]
    ranges = merge_ranges([(w.dirty_lo, w.dirty_hi) for w in dirty])  # type: ignore[misc]

    def lane(hook: EventsChanged) -> Callable[[Conn], Awaitable[None]]:
        async def work(conn: Conn) -> None:
            for lo, hi in ranges:
                await hook(conn, lo, hi, zone)

        return work

    if ranges:
        # A hook listed twice runs once: two copies at once would rewrite the same rows.
        hooks = dict.fromkeys(ctx.after_events)
        outcomes = await asyncio.gather(
            *(ctx.db.run(lane(hook)) for hook in hooks), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def clean(conn: Conn) -> None:
        current = await load_windows(conn)
        read = {w.key: w for w in dirty}
        cleaned = {w.key: replace(w, dirty_lo=None, dirty_hi=None)
                   for w in current if read.get(w.key) == w}  # fmt: skip
        await save_windows(conn, cleaned.values())
        await forget_windows(conn, removable([cleaned.get(w.key, w) for w in current]))

    await ctx.db.run(clean)
    # bench/bench_sync.py reads this line to report the refresh's share of a run.
    logger.info(
        "refreshed %d range(s) of events in %.2f s", len(ranges), time.monotonic() - started
    )


async def _sync_recent(ctx: StreamContext, end: datetime, hours: int) -> None:
    if hours < 1:
        raise ValueError(f"hours must be at least 1, got {hours}")
    start = end - timedelta(hours=hours)
    existing = await ctx.db.run(load_windows)
    key = Window(start, end).key
    recent = Window(start, end, cursor=next((w.cursor for w in existing if w.key == key), None))
    await ctx.db.run(lambda c: save_windows(c, [recent]))
    await _execute_windows(ctx, [recent])


async def _oldest_event(ctx: StreamContext) -> datetime | None:
    pages = ctx.client.iter_events(include=())
    try:
        async for page in pages:
            return page.records[0].datetime if page.records else None
    finally:
        await close(pages)
    return None


async def _run_windows(
    ctx: StreamContext, existing: list[Window], *, since: datetime, until: datetime
) -> None:
    size = ctx.options.events.window
    to_write, to_run = plan(existing, since=since, until=until, size=size)
    if existing and since < min(w.start for w in existing):
        # An earlier --since extends the history backwards.
        earlier, _ = plan([], since=since, until=min(w.start for w in existing), size=size)
        to_write += earlier
        to_run = sorted(to_run + earlier, key=lambda w: w.start)
    await ctx.db.run(lambda c: save_windows(c, to_write))
    await _execute_windows(ctx, to_run)


async def _execute_windows(ctx: StreamContext, windows: list[Window]) -> None:
    campaign_of_message = await ctx.db.run(CampaignMessageRepository().campaign_of_message)
    engine = EventWindows(ctx.db, ctx.client, ctx.counters, options=ctx.options.events,
                          campaign_of_message=campaign_of_message)  # fmt: skip
    await engine.run(windows)


def merge_ranges(
    ranges: list[tuple[datetime, datetime]], gap: timedelta = REFRESH_GAP
) -> list[tuple[datetime, datetime]]:
    """Return the ranges merged where they overlap or lie within `gap` of each other."""
    merged: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + gap:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def _second(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)
