"""A retry policy as a small value object, shared by the database and Klaviyo layers.

The clock and the sleep function are injected so that tests do not wait.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a transient failure.

    `attempts` counts every try, the first included. Delays grow as
    `base_s * factor ** (attempt - 1)`, are capped at `cap_s`, and get full jitter
    (a uniform draw between half the delay and the delay). A server's `Retry-After` wins
    over the computed delay. Nothing is retried past `deadline_s` from the first try.
    """

    attempts: int = 3
    base_s: float = 0.1
    cap_s: float = 3.0
    factor: float = 2.0
    jitter: bool = True
    deadline_s: float | None = None
    sleep: Sleep = field(default=asyncio.sleep, compare=False, repr=False)
    clock: Clock = field(default=time.monotonic, compare=False, repr=False)
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if self.base_s < 0 or self.cap_s < 0:
            raise ValueError("base_s and cap_s must not be negative")
        if self.factor < 1:
            raise ValueError(f"factor must be at least 1, got {self.factor}")

    def delay_s(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Return how long to wait after failed try number `attempt` (1-based)."""
        if retry_after_s is not None and retry_after_s >= 0:
            return retry_after_s
        delay = min(self.cap_s, self.base_s * self.factor ** (attempt - 1))
        if self.jitter:
            delay = self.rng.uniform(delay / 2, delay)
        return delay

    def allows(self, attempt: int, started_at: float, next_delay_s: float) -> bool:
        """Say whether another try may follow failed try number `attempt`."""
        if attempt >= self.attempts:
            return False
        if self.deadline_s is None:
            return True
        return self.clock() - started_at + next_delay_s <= self.deadline_s
