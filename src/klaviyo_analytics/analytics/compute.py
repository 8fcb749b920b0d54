"""Run CPU-heavy analyses (STL decompositions, forecast fits, anomaly scores) off the event loop.

A fit holds the GIL for most of its length (statsmodels' STL and ETS loop in Python between
their C parts), so in a worker *thread* of the API's process it still stalls the event loop:
/health waited up to 729 ms behind the largest decomposition the API allows. `Workers` runs
each fit in a pool of worker *processes*, which have interpreters of their own.

Workers are spawned, not forked (the parent holds threads, sockets and a connection pool), and
spawning one costs an interpreter start plus the modelling imports (about 2 CPU-seconds and
130 MiB). Workers run at a lower CPU priority than the API (niceness 10). `warm()` starts them all ahead of the first request; a pool that is never warmed
starts its workers at its first fit. A worker that dies (killed, out of memory) breaks the
pool: that fit fails with AnalysisUnavailableError and the next one gets a new pool.

`in_thread` does the same job with a thread, for callers whose event loop serves nobody else
(the CLI, tests of the analytics functions).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Any, Protocol, TypeVar

from klaviyo_analytics.analytics.errors import AnalysisUnavailableError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The modules a worker imports before its first fit: what the fits themselves need.
_MODELLING_MODULES = (
    "klaviyo_analytics.analytics.timeseries",
    "klaviyo_analytics.analytics.forecast_models",
    "klaviyo_analytics.analytics.anomalies",
)


class Offload(Protocol):
    """Run `fn(*args, **kwargs)` somewhere that does not block the caller's event loop."""

    async def __call__(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T: ...


async def in_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run `fn(*args, **kwargs)` in a worker thread (for event loops that serve nobody else)."""
    return await asyncio.to_thread(fn, *args, **kwargs)


# Workers yield the CPU to the API's own process: on a machine with as many busy workers as
# cores, /health would otherwise wait for a time slice behind the fits.
WORKER_NICENESS = 10


def _start_worker() -> None:
    """Lower the worker's CPU priority and import what the fits need before the first one."""
    import importlib

    os.nice(WORKER_NICENESS)
    for name in _MODELLING_MODULES:
        importlib.import_module(name)


def _ready() -> bool:
    return True


class Workers:
    """A pool of worker processes for CPU-heavy analyses; at most `processes` fits at once.

    Use `async with Workers(2) as workers:` (closing stops the processes) and
    `await workers(fn, *args, **kwargs)`; `fn`, its arguments and its result must be picklable
    (module-level functions and frozen dataclasses are). With `warm`, entering starts the
    workers in the background (see `warm()`).
    """

    def __init__(self, processes: int, *, warm: bool = False) -> None:
        if processes < 1:
            raise ValueError(f"processes must be at least 1, not {processes}")
        self.processes = processes
        self._warm_on_enter = warm
        self._warming: asyncio.Task[None] | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._slots = asyncio.Semaphore(processes)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
            )
        return self._pool

    async def warm(self) -> None:
        """Start every worker and import the modelling libraries in it; return when all are up."""
        loop = asyncio.get_running_loop()
        pool = self._executor()
        # Submitted together, each task finds no idle worker and so starts one of its own.
        await asyncio.gather(*(loop.run_in_executor(pool, _ready) for _ in range(self.processes)))

    async def __call__(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Return `fn(*args, **kwargs)` computed in a worker process.

        Raises what `fn` raises, and AnalysisUnavailableError when the worker died.
        """
        async with self._slots:
            pool = self._executor()
            try:
                return await asyncio.get_running_loop().run_in_executor(
                    pool, partial(fn, *args, **kwargs)
                )
            except BrokenProcessPool:
                if self._pool is pool:
                    self._pool = None
                    pool.shutdown(wait=False, cancel_futures=True)
                logger.warning("an analysis worker stopped during %s", getattr(fn, "__name__", fn))
                raise AnalysisUnavailableError(
                    "the analysis worker stopped before it finished; try again"
                ) from None

    def _warmed(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.warning("analysis workers did not start: %s", task.exception())

    async def aclose(self) -> None:
        """Stop the worker processes (a fit still running is abandoned)."""
        if self._warming is not None:
            self._warming.cancel()
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    async def __aenter__(self) -> Workers:
        if self._warm_on_enter:
            self._warming = asyncio.get_running_loop().create_task(self.warm())
            self._warming.add_done_callback(self._warmed)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
