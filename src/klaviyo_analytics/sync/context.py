"""What every stream's run is given: the database, the client, its counters, the options, and
the arguments of this run; and how it writes a page (rows, quarantine, archive, state at once).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from klaviyo_analytics import klaviyo as k
from klaviyo_analytics.db.pool import Conn, Database
from klaviyo_analytics.db.repos.base import Repository
from klaviyo_analytics.db.repos.sync_state import StreamState, SyncStateRepository
from klaviyo_analytics.sync.events import EventSyncOptions
from klaviyo_analytics.sync.pages import store_page
from klaviyo_analytics.sync.progress import RunCounters

R = TypeVar("R")
_state = SyncStateRepository()

# A hook run after events changed: (connection, earliest, latest event time, store zone).
EventsChanged = Callable[[Conn, datetime, datetime, str], Awaitable[None]]


@dataclass(frozen=True)
class SyncOptions:
    """How a sync behaves; the wiring builds it from the settings."""

    events: EventSyncOptions = field(default_factory=EventSyncOptions)
    default_backfill_days: int = 365
    archive_raw: bool = False
    timezone: str | None = None
    # Ask Klaviyo for each profile's predictive analytics (a slower rate limit: 150 a minute).
    profile_predictions: bool = True


@dataclass(frozen=True)
class RunArgs:
    """What one run of a stream was asked for: a start, an end, or a full re-read."""

    since: datetime | None = None
    until: datetime | None = None
    full: bool = False
    # Only for the events stream's catch-up run: re-read this many recent hours.
    recent_hours: int | None = None


@dataclass
class StreamContext:
    """What a stream's run needs: the database, the client, its counters, options and hooks."""

    db: Database
    client: k.KlaviyoClient
    counters: RunCounters
    options: SyncOptions = field(default_factory=SyncOptions)
    clock: Callable[[], datetime] = datetime.now
    after_events: Sequence[EventsChanged] = ()
    timezone: Callable[[], Awaitable[str]] | None = None

    async def store_timezone(self) -> str:
        """Return the store's time zone (UTC when nobody told us)."""
        return await self.timezone() if self.timezone is not None else "UTC"

    async def write(
        self,
        table: str,
        repo: Repository[R],
        records: Sequence[R],
        page: k.Page[Any],
        *,
        state: StreamState | None = None,
        also: Sequence[tuple[str, Repository[Any], Sequence[Any]]] = (),
    ) -> None:
        """Write one page's records (and related ones, and a state) in one transaction."""
        archive_as = self.counters.stream if self.options.archive_raw else None

        async def work(conn: Conn) -> dict[str, int]:
            changed = await store_page(conn, self.counters, page, [(table, repo, records), *also],
                                       archive_as=archive_as)  # fmt: skip
            if state is not None:
                await _state.upsert(conn, state)
            return changed

        changed = await self.db.run(work)
        self.counters.add_rows(table, changed[table], fetched=len(records), pages=1)
        for other_table, _, other_records in also:
            self.counters.add_rows(other_table, changed[other_table], fetched=len(other_records))
