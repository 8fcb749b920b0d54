"""Incremental state of the event stream: disjoint time windows, each checkpointed on its own.

A window is one `sync_state` row of stream `events`, keyed by its start (ISO, UTC):
`cursor_value` is the datetime of the newest event actually stored for it (a resume re-reads
from there with `>=`, so same-second events are never skipped), and `state` holds its end,
whether it is done, and the range of event times written but not yet aggregated ("dirty").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from klaviyo_analytics.db.repos.base import Conn
from klaviyo_analytics.db.repos.sync_state import StreamState, SyncStateRepository

EVENTS_STREAM = "events"
_states = SyncStateRepository()


def iso(moment: datetime) -> str:
    """Return a UTC ISO-8601 text for a datetime (the form cursors are stored in)."""
    return moment.astimezone(UTC).isoformat()


def parse(text: str) -> datetime:
    """Read a stored ISO-8601 datetime."""
    return datetime.fromisoformat(text).astimezone(UTC)


@dataclass(frozen=True)
class Window:
    """The half-open range [start, end) of event times, and where its sync stopped."""

    start: datetime
    end: datetime
    cursor: datetime | None = None
    done: bool = False
    dirty_lo: datetime | None = None
    dirty_hi: datetime | None = None

    @property
    def key(self) -> str:
        """Return the partition key: the start as ISO text."""
        return iso(self.start)

    @property
    def resume_from(self) -> datetime:
        """Return where fetching starts again: the cursor (inclusive) or the start."""
        return self.cursor or self.start

    @property
    def fraction_done(self) -> float:
        """Return how much of the window's time range is behind the cursor (0..1)."""
        if self.done:
            return 1.0
        if self.cursor is None:
            return 0.0
        span = (self.end - self.start).total_seconds()
        return (
            min(1.0, max(0.0, (self.cursor - self.start).total_seconds() / span)) if span else 1.0
        )

    def stored(self, lo: datetime, hi: datetime) -> Window:
        """Return the window after events with times in [lo, hi] were stored."""
        return replace(
            self,
            cursor=max(hi, self.cursor) if self.cursor else hi,
            dirty_lo=min(lo, self.dirty_lo) if self.dirty_lo else lo,
            dirty_hi=max(hi, self.dirty_hi) if self.dirty_hi else hi,
        )

    def to_state(self) -> StreamState:
        """Return the row that records this window."""
        state: dict[str, Any] = {"end": iso(self.end), "done": self.done}
        if self.dirty_lo is not None and self.dirty_hi is not None:
            state["dirty_lo"], state["dirty_hi"] = iso(self.dirty_lo), iso(self.dirty_hi)
        return StreamState(
            EVENTS_STREAM, self.key, iso(self.cursor) if self.cursor else None, state
        )

    @staticmethod
    def from_state(row: StreamState) -> Window:
        """Read a window back from its row."""
        s = row.state
        return Window(
            start=parse(row.partition),
            end=parse(s["end"]),
            cursor=parse(row.cursor_value) if row.cursor_value else None,
            done=bool(s.get("done")),
            dirty_lo=parse(s["dirty_lo"]) if s.get("dirty_lo") else None,
            dirty_hi=parse(s["dirty_hi"]) if s.get("dirty_hi") else None,
        )


def split_range(start: datetime, end: datetime, size: timedelta) -> list[tuple[datetime, datetime]]:
    """Cut [start, end) into consecutive pieces of at most `size`, aligned to UTC midnight."""
    if end <= start:
        return []
    pieces: list[tuple[datetime, datetime]] = []
    lo = start
    while lo < end:
        midnight = datetime(lo.year, lo.month, lo.day, tzinfo=UTC)
        steps = int((lo - midnight) / size) + 1
        hi = min(end, midnight + size * steps)
        pieces.append((lo, hi))
        lo = hi
    return pieces


def split_evenly(start: datetime, end: datetime, parts: int) -> list[tuple[datetime, datetime]]:
    """Cut [start, end) into `parts` equal pieces on whole seconds."""
    total = int((end - start).total_seconds())
    parts = max(1, min(parts, total))
    bounds = [start + timedelta(seconds=total * i // parts) for i in range(parts)] + [end]
    return [(bounds[i], bounds[i + 1]) for i in range(parts) if bounds[i] < bounds[i + 1]]


async def load_windows(conn: Conn) -> list[Window]:
    """Return every stored window of the event stream, oldest first."""
    rows = await _states.partitions(conn, EVENTS_STREAM)
    return sorted((Window.from_state(r) for r in rows if r.partition), key=lambda w: w.start)


async def save_windows(conn: Conn, windows: Iterable[Window]) -> None:
    """Write windows' rows (in the caller's transaction)."""
    for window in windows:
        await _states.upsert(conn, window.to_state())


def saving(windows: list[Window]) -> Callable[[Conn], Awaitable[None]]:
    """Return a unit of work that writes these windows (for `Database.run`)."""
    return lambda conn: save_windows(conn, windows)


async def forget_windows(conn: Conn, keys: Iterable[str]) -> None:
    """Delete windows' rows (finished history that no resume needs)."""
    for key in keys:
        await _states.delete(conn, EVENTS_STREAM, key)


def plan(
    existing: list[Window], *, since: datetime, until: datetime, size: timedelta
) -> tuple[list[Window], list[Window]]:
    """Return (windows to write, windows to run) for syncing events up to `until`.

    After an interrupted run, its unfinished windows are resumed and only time after the
    furthest window end is added. Otherwise the new windows start at the newest event actually
    stored (inclusive), never at a window's end: an end can lie past the newest stored event,
    and starting there would skip events that show up later with earlier times.
    """
    resume = [w for w in existing if not w.done]
    if not existing:
        start = since
    elif resume:
        start = max(w.end for w in existing)
    else:
        start = newest_cursor(existing) or min(w.start for w in existing)
    new = [Window(lo, hi) for lo, hi in split_range(start, until, size)]
    by_key = {w.key: w for w in existing}
    merged = []
    for w in new:
        old = by_key.get(w.key)
        if old is not None:
            w = replace(old, end=max(old.end, w.end), done=False)
        merged.append(w)
    merged_keys = {w.key for w in merged}
    return merged, sorted(
        [w for w in resume if w.key not in merged_keys] + merged, key=lambda w: w.start
    )


def newest_cursor(windows: Iterable[Window]) -> datetime | None:
    """Return the time of the newest event stored by any window."""
    return max((w.cursor for w in windows if w.cursor is not None), default=None)


def removable(windows: list[Window]) -> list[str]:
    """Return keys of finished windows no later run needs.

    Unfinished windows are kept for resuming, and so is one finished window that remembers
    where the next run starts: the one holding the newest stored event (or, when nothing was
    stored yet, the earliest).
    """
    done = [w for w in windows if w.done]
    if not done:
        return []
    with_cursor = [w for w in done if w.cursor is not None]
    anchor = (
        max(with_cursor, key=lambda w: w.cursor or w.start)
        if with_cursor
        else min(done, key=lambda w: w.start)
    )
    return [w.key for w in done if w.key != anchor.key and w.dirty_lo is None]
