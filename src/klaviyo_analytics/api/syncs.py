"""Syncs run by the server in the background: one asyncio task per request, one per stream.

`SyncManager.start` returns once the run rows exist (or the task ended before writing one),
so the caller gets run ids at once. A stream that is already syncing, alone or as part of
"all", is refused with ConflictError.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from klaviyo_analytics.api.errors import ConflictError
from klaviyo_analytics.errors import KlaviyoAnalyticsError
from klaviyo_analytics.sync.registry import STREAMS
from klaviyo_analytics.sync.runner import DataSyncService, StreamResult

logger = logging.getLogger(__name__)

ALL = "all"
START_WAIT_S = 30.0


@dataclass(frozen=True)
class Started:
    """A run whose row exists."""

    stream: str
    run_id: int


class SyncManager:
    """Start syncs as background tasks of the server and keep them apart."""

    def __init__(
        self,
        service: DataSyncService,
        *,
        settle: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Run syncs through `service` (its `active` counters are the live progress); await
        `settle()` after each sync (pending cache invalidations)."""
        self.service = service
        self.settle = settle
        self._tasks: dict[str, asyncio.Task[list[StreamResult]]] = {}

    def running(self) -> list[str]:
        """Return the streams (or "all") whose sync task is still running."""
        return [name for name, task in self._tasks.items() if not task.done()]

    def busy(self, stream: str) -> bool:
        """Say whether starting `stream` now would clash with a running sync."""
        running = self.running()
        if stream == ALL:
            return bool(running) or bool(self.service.active)
        return ALL in running or stream in running or stream in self.service.active

    def start_in_background(self, stream: str) -> asyncio.Task[list[StreamResult]]:
        """Start a sync without waiting for its run rows.

        Raises ConflictError when the stream (or "all") is already syncing, ValueError for an
        unknown stream.
        """
        if stream != ALL and stream not in STREAMS:
            raise ValueError(f"unknown stream {stream!r}")
        if self.busy(stream):
            raise ConflictError(
                f"a sync of {stream} is already running",
                details={"running": sorted(self.running() or self.service.active)},
            )
        task = asyncio.get_running_loop().create_task(self._run(stream), name=f"sync-{stream}")
        # The outcome is in the run history; reading it here keeps asyncio from logging it twice.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        self._tasks[stream] = task
        return task

    async def start(self, stream: str, *, wait_s: float = START_WAIT_S) -> list[Started]:
        """Start a sync and return its runs once at least one row exists.

        Raises ConflictError when already syncing, and the sync's own error (for example a
        refused Klaviyo key) when it failed before recording any run.
        """
        before = len(self.service.results)
        task = self.start_in_background(stream)
        wanted = set(STREAMS) if stream == ALL else {stream}
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            live = [
                Started(name, c.run_id)
                for name, c in list(self.service.active.items())
                if name in wanted and c.run_id is not None
            ]
            done = [
                Started(r.stream, r.run_id)
                for r in self.service.results[before:]
                if r.stream in wanted
            ]
            if live or done:
                return sorted({*done, *live}, key=lambda s: s.run_id)
            if task.done():
                exc = task.exception()
                if exc is not None:
                    raise exc
                return [Started(r.stream, r.run_id) for r in task.result()]
            await asyncio.sleep(0.01)
        return []

    async def wait(self) -> None:
        """Wait for every running sync (tests and shutdown)."""
        tasks = [t for t in self._tasks.values() if not t.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel running syncs (their runs are recorded as cancelled) and wait for them."""
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    async def _run(self, stream: str) -> list[StreamResult]:
        try:
            results = await self.service.run_stream(stream)
        except (KlaviyoAnalyticsError, OSError) as exc:
            logger.error("background sync of %s failed: %s", stream, exc)
            raise
        finally:
            if self.settle is not None:
                await self.settle()
            # Keep the shared result list from growing without bound in a long-lived server.
            if len(self.service.results) > 1000 and not self.service.active:
                del self.service.results[:-100]
        logger.info("background sync of %s finished: %d run(s)", stream, len(results))
        return results
