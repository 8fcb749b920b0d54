"""What a sync run counts: rows per table, pages, quarantined records, progress."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from klaviyo_analytics import klaviyo as k
from klaviyo_analytics.db.pool import Conn
from klaviyo_analytics.db.repos.sync_state import SyncRunRepository

_runs = SyncRunRepository()


@dataclass
class RunCounters:
    """Live counters of one stream's run; the CLI and the API read them while it runs."""

    stream: str
    run_id: int | None = None
    rows: dict[str, int] = field(default_factory=dict)
    fetched: int = 0
    pages: int = 0
    quarantined: int = 0
    fraction: float | None = None
    started: float = field(default_factory=time.monotonic)
    listener: Callable[[RunCounters], None] | None = None

    def add_rows(self, table: str, changed: int, *, fetched: int, pages: int = 0) -> None:
        """Count rows written to a table and records fetched."""
        self.rows[table] = self.rows.get(table, 0) + changed
        self.fetched += fetched
        self.pages += pages
        self._notify()

    def note_progress(self, fraction: float) -> None:
        """Record how much of the stream is done, when that is known (0..1)."""
        self.fraction = fraction
        self._notify()

    async def quarantine(self, conn: Conn, stream: str, bad: k.InvalidRecord) -> None:
        """Keep a record that failed validation, with its reason (in the caller's transaction)."""
        await _runs.quarantine(
            conn,
            run_id=self.run_id,
            stream=stream,
            record_id=bad.resource_id,
            reason=bad.reason,
            raw=dict(bad.raw),
        )
        self.quarantined += 1

    @property
    def rate_per_s(self) -> float:
        """Return records fetched per second so far."""
        elapsed = time.monotonic() - self.started
        return self.fetched / elapsed if elapsed > 0 else 0.0

    def _notify(self) -> None:
        if self.listener is not None:
            self.listener(self)
