"""Decide, for every request at once, whether the database server is down.

When a request meets a lost connection or no connection, the pool marks the server suspect;
the next request probes it (one fresh connection, given up after PROBE_TIMEOUT_S). While the
probe fails, requests fail at once (one probe at most every PROBE_INTERVAL_S), instead of each
waiting the pool's connection timeout. The first probe that connects after an outage has the
pool renewed: its old connections are dead and psycopg_pool's own reconnection backs off for
minutes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import psycopg
from psycopg_pool import PoolTimeout

from klaviyo_analytics.errors import DatabaseUnavailableError

logger = logging.getLogger(__name__)

# A refused or missing socket answers at once; a silent host is given up on after this.
PROBE_TIMEOUT_S = 0.8
PROBE_INTERVAL_S = 0.25
# What callers (and so unauthenticated HTTP clients) are told; the detail goes to the log.
UNAVAILABLE = "database unavailable"


class DatabaseDownError(DatabaseUnavailableError):
    """The server was found down by the probe (raised at once, no connection tried)."""


# Besides class 08 (connection exceptions): admin shutdown, crash shutdown, cannot connect now.
CONNECTION_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})


def is_connection_problem(exc: BaseException) -> bool:
    """Say whether `exc` means the connection or the server went away (not a busy moment)."""
    return failed_with(exc, CONNECTION_SQLSTATES)


def failed_with(exc: BaseException, sqlstates: frozenset[str]) -> bool:
    """Say whether `exc` is a pool timeout, a broken connection (SQLSTATE class 08, or none on
    an OperationalError: the server closed it, the network reset) or one of `sqlstates`."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate
    if state is None:
        return isinstance(exc, psycopg.OperationalError)
    return state.startswith("08") or state in sqlstates


@dataclass
class OutageGuard:
    """The up/suspect/down state of one server, shared by every request of one pool."""

    target: str
    down: bool = False
    suspect: bool = False
    last_probe: float = 0.0
    _lock: asyncio.Lock | None = field(default=None, repr=False)

    async def check(
        self, probe: Callable[[], Awaitable[str | None]], renew: Callable[[], Awaitable[None]]
    ) -> None:
        """Return when the server is believed up; probe it first when it is down or suspect.

        `probe` returns why a connection failed (None when it worked); `renew` replaces the
        pool after an outage. Raises DatabaseDownError while the server stays down.
        """
        if not (self.down or self.suspect):
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not (self.down or self.suspect):
                return  # another request's probe found it up
            now = time.monotonic()
            if self.down and now - self.last_probe < PROBE_INTERVAL_S:
                raise DatabaseDownError(UNAVAILABLE)
            self.last_probe = now
            problem = await probe()
            if problem is not None:
                if not self.down:
                    logger.warning("database down (%s): %s", self.target, problem)
                self.down = True
                raise DatabaseDownError(UNAVAILABLE)
            if self.down:
                logger.info("database back (%s); renewing the connection pool", self.target)
                await renew()
            self.down = self.suspect = False
