"""Client-side rate limiting per Klaviyo operation, shared by every request of one client.

Klaviyo limits each operation (`x-klaviyo-ratelimit` in the OpenAPI spec) with a burst window of
one second, a steady window of one minute and, for a few operations, a daily window. We keep
every window as a sliding log of send times: a request goes out only when fewer than `limit`
requests of that operation went out in the last `period_s`. A token bucket with capacity `limit`
refilled at `limit / period_s` would let up to twice the limit through in one sliding window (a
full bucket plus a window's refill), which is exactly the pattern that earns 429s from the steady
limit; the log never does.

Waiters for one operation queue in FIFO order behind an `asyncio.Lock`, so concurrent tasks are
spread evenly instead of stampeding when a window opens. A 429's `Retry-After` blocks the whole
operation (`block`), so the other tasks wait too instead of collecting 429s of their own.

Each window is kept `margin_s` longer than Klaviyo's: we time a request when it leaves, Klaviyo
when it arrives, and a request that opens a new connection arrives later than one that reuses a
kept-alive connection, so without a margin a batch can look denser at the server than it was.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from klaviyo_analytics.retry import Clock, Sleep


@dataclass(frozen=True)
class RateLimit:
    """The limits of one operation: requests per second, per minute and (optionally) per day."""

    burst_per_s: int
    steady_per_m: int
    daily: int | None = None

    def windows(self) -> tuple[tuple[int, float], ...]:
        """Return the (limit, period in seconds) pairs this limit imposes."""
        pairs: list[tuple[int, float]] = [(self.burst_per_s, 1.0), (self.steady_per_m, 60.0)]
        if self.daily is not None:
            pairs.append((self.daily, 86_400.0))
        return tuple(pairs)


# Read off `x-klaviyo-ratelimit` in stable.json (revision 2026-07-15); a unit test checks this
# table against the spec when the spec is present. `get_profiles` asked for
# `additional-fields[profile]=predictive_analytics` has lower limits of its own (10/s, 150/m,
# in the operation's description), kept under PREDICTIVE_PROFILES.
RATE_LIMITS: Mapping[str, RateLimit] = {
    "get_accounts": RateLimit(1, 15),
    "get_metrics": RateLimit(10, 150),
    "get_events": RateLimit(350, 3500),
    "get_profiles": RateLimit(75, 750),
    "get_profiles+predictive_analytics": RateLimit(10, 150),
    "get_campaigns": RateLimit(10, 150),
    "get_messages_for_campaign": RateLimit(10, 150),
    "get_flows": RateLimit(3, 60),
    "get_actions_for_flow": RateLimit(3, 60),
    "get_flow_action_messages": RateLimit(3, 60),
    "get_lists": RateLimit(75, 750),
    "get_segments": RateLimit(75, 750),
    "get_segment": RateLimit(75, 750),
    "get_forms": RateLimit(3, 60),
    "get_templates": RateLimit(75, 750),
    "query_campaign_values": RateLimit(1, 2, 225),
    "query_flow_values": RateLimit(1, 2, 225),
    "query_flow_series": RateLimit(1, 2, 225),
    "query_form_values": RateLimit(1, 2, 225),
    "query_segment_values": RateLimit(1, 2, 225),
    "query_metric_aggregates": RateLimit(3, 60),
}

# The limiter key of `get_profiles` with predictive analytics.
PREDICTIVE_PROFILES = "get_profiles+predictive_analytics"

# For an operation missing from the table: the lowest limits of a plain GET in the spec.
DEFAULT_RATE_LIMIT = RateLimit(1, 15)


class _Window:
    """A sliding log of send times: at most `limit` sends in any `period_s`."""

    def __init__(self, limit: int, period_s: float) -> None:
        if limit < 1:
            raise ValueError(f"a rate limit must allow at least 1 request, got {limit}")
        self.limit = limit
        self.period_s = period_s
        self.sent: deque[float] = deque()

    def wait_s(self, now: float) -> float:
        while self.sent and self.sent[0] <= now - self.period_s:
            self.sent.popleft()
        if len(self.sent) < self.limit:
            return 0.0
        return self.sent[0] + self.period_s - now

    def record(self, now: float) -> None:
        self.sent.append(now)


class _OperationLimiter:
    def __init__(self, limit: RateLimit, margin_s: float) -> None:
        self.lock = asyncio.Lock()
        self.windows = [_Window(n, period + margin_s) for n, period in limit.windows()]
        self.blocked_until = float("-inf")


class RateLimiter:
    """Make each operation's requests wait their turn; one instance per client (per process).

    The clock and sleep are injected so tests can run a simulated clock.
    """

    def __init__(
        self,
        limits: Mapping[str, RateLimit] = RATE_LIMITS,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        default: RateLimit = DEFAULT_RATE_LIMIT,
        margin_s: float = 0.1,
    ) -> None:
        if margin_s < 0:
            raise ValueError(f"margin_s must not be negative, got {margin_s}")
        self._margin_s = margin_s
        self._limits = dict(limits)
        self._default = default
        self._clock = clock
        self._sleep = sleep
        self._operations: dict[str, _OperationLimiter] = {}

    def _operation(self, operation: str) -> _OperationLimiter:
        state = self._operations.get(operation)
        if state is None:
            limit = self._limits.get(operation, self._default)
            state = _OperationLimiter(limit, self._margin_s)
            self._operations[operation] = state
        return state

    async def acquire(self, operation: str) -> float:
        """Wait until one more request of `operation` may go out; return the seconds waited."""
        state = self._operation(operation)
        waited = 0.0
        async with state.lock:
            while True:
                now = self._clock()
                wait = max(
                    state.blocked_until - now,
                    max(window.wait_s(now) for window in state.windows),
                )
                if wait <= 0:
                    for window in state.windows:
                        window.record(now)
                    return waited
                await self._sleep(wait)
                waited += wait

    def block(self, operation: str, seconds: float) -> None:
        """Hold every request of `operation` for `seconds` (a 429's `Retry-After`)."""
        state = self._operation(operation)
        state.blocked_until = max(state.blocked_until, self._clock() + seconds)
