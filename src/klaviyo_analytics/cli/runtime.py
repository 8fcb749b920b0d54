"""What every command's entry point sets up for itself: logging and signals. Resources come
from `wiring`."""

from __future__ import annotations

import gc
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["configure_logging", "stop_on_sigterm", "tune_garbage_collection"]

logger = logging.getLogger(__name__)


def configure_logging(level: str) -> None:
    """Send log records to stderr at the configured level (entry points only)."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request URL at INFO; ours are logged by the client at DEBUG already.
    logging.getLogger("httpx").setLevel(logging.WARNING)


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into a clean exit (status 0) that runs every `with` block's cleanup.

    Without this, SIGTERM kills the process outright, and uvicorn (which catches it while it
    serves) re-raises it after its own shutdown: the embedded PostgreSQL this process started
    would be left running either way.
    """

    def terminate(signum: int, frame: object) -> None:
        logger.info("SIGTERM received: shutting down")
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# A young collection after 50,000 net allocations instead of 700; the middle generation every
# 10 of those and a full collection every 5 of those (CPython's defaults: 700, 10, 10). The
# full collections bound the memory of cyclic garbage promoted while 24 windows' pages are in
# flight: with (50,000, 20, 100) the sync's peak RSS reached 316 MiB at 276 k events (sync CPU
# 60 ms per 1,000 events); with these, 209 / 287 / 279 MiB at 80 k / 157 k / 276 k (64 ms).
GC_THRESHOLDS = (50_000, 10, 5)


def tune_garbage_collection() -> None:
    """Make the cycle collector run rarely in a process that syncs (entry points only).

    A page of events allocates some 30,000 objects (its parsed JSON, validated records, rows),
    freed by reference counting as soon as the page is stored; with CPython's default
    thresholds they set off a young collection every 700 allocations and every tenth of those
    an older one, which traverses every object still alive, the pages in flight included. In
    interleaved runs of `sync events` (113,349 events from the sandbox) that was 30 % of the
    sync process's CPU: 80 -> 54 and 74 -> 53 ms per 1,000 events with (50,000, 20, 100).
    What is alive once the command has started (modules, settings) is frozen out of the
    collector's sight. Cycles are still collected, later.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
