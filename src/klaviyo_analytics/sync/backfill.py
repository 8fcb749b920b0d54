"""The events stream's runs: a backfill or an incremental run planned as windows, a catch-up
re-read of recent hours, and afterwards the refresh of every range the run dirtied.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from klaviyo_analytics.db.pool import Conn
from klaviyo_analytics.db.repos.campaigns import CampaignMessageRepository
from klaviyo_analytics.db.repos.sync_state import SyncStateRepository
from klaviyo_analytics.sync.context import RunArgs, StreamContext
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

REFRESH_CHUNK = timedelta(days=31)
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
    """Run the after-events hooks over every dirty range, then mark them clean and drop
    finished windows that no resume needs, all in one transaction."""
    zone = await ctx.store_timezone()

    async def work(conn: Conn) -> None:
        windows = await load_windows(conn)
        dirty = [w for w in windows if w.dirty_lo is not None and w.dirty_hi is not None]
        for lo, hi in _merge([(w.dirty_lo, w.dirty_hi) for w in dirty]):  # type: ignore[misc]
            chunk = lo
            while chunk <= hi:
                upper = min(hi, chunk + REFRESH_CHUNK)
                for hook in ctx.after_events:
                    await hook(conn, chunk, upper, zone)
                chunk = upper + timedelta(microseconds=1)
        cleaned = {w.key: replace(w, dirty_lo=None, dirty_hi=None) for w in dirty}
        await save_windows(conn, cleaned.values())
        await forget_windows(conn, removable([cleaned.get(w.key, w) for w in windows]))

    await ctx.db.run(work)


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
