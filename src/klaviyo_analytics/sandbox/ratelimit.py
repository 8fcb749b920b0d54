"""Enforce each operation's rate limits (burst per second, steady per minute, daily)."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from klaviyo_analytics.sandbox.apierror import ApiError
from klaviyo_analytics.sandbox.spec import klaviyo_spec

# From the spec's `x-klaviyo-ratelimit` of each operation the sandbox answers.
LIMITS: dict[str, tuple[int, int, int | None]] = {
    "get_accounts": (1, 15, None),
    "get_metrics": (10, 150, None),
    "get_events": (350, 3500, None),
    "get_profiles": (75, 750, None),
    # get_profiles with `additional-fields[profile]=predictive_analytics` (its description).
    "get_profiles+predictive_analytics": (10, 150, None),
    "get_campaigns": (10, 150, None),
    "get_messages_for_campaign": (10, 150, None),
    "get_flows": (3, 60, None),
    "get_actions_for_flow": (3, 60, None),
    "get_flow_action_messages": (3, 60, None),
    "get_lists": (75, 750, None),
    "get_segments": (75, 750, None),
    "get_list": (75, 750, None),
    "get_segment": (75, 750, None),
    "get_forms": (3, 60, None),
    "get_templates": (75, 750, None),
    "query_campaign_values": (1, 2, 225),
    "query_flow_values": (1, 2, 225),
    "query_flow_series": (1, 2, 225),
    "query_form_values": (1, 2, 225),
    "query_segment_values": (1, 2, 225),
    "query_metric_aggregates": (3, 60, None),
}


def _spec_limits(operation: str) -> tuple[int, int, int | None]:
    """Read an operation's `x-klaviyo-ratelimit` (`{"burst": "3/s", "steady": "60/m"}`)."""
    for methods in klaviyo_spec()["paths"].values():
        op = methods.get("get") or {}
        if op.get("operationId") == operation:
            rule = op.get("x-klaviyo-ratelimit", {})
            burst = int(str(rule.get("burst", "1/s")).split("/")[0])
            steady = int(str(rule.get("steady", "15/m")).split("/")[0])
            daily = rule.get("daily")
            return burst, steady, int(str(daily).split("/")[0]) if daily else None
    raise KeyError(operation)


@dataclass(frozen=True)
class Decision:
    """The outcome of one request against its operation's windows."""

    limit: int
    remaining: int
    reset_s: int

    def headers(self) -> dict[str, str]:
        """Return the `RateLimit-*` headers Klaviyo sends."""
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
        }


class RateLimiter:
    """Sliding windows per operation; thread-safe; the clock is injectable for tests."""

    def __init__(
        self,
        enabled: bool = True,
        scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create empty windows; `scale` multiplies every limit."""
        self.enabled = enabled
        self.scale = scale
        self._clock = clock
        self._hits: dict[tuple[str, int], deque[float]] = {}
        self._lock = threading.Lock()

    def configure(self, enabled: bool, scale: float) -> None:
        """Switch limits on or off, or rescale them, and forget past requests."""
        with self._lock:
            self.enabled = enabled
            self.scale = scale
            self._hits.clear()

    def check(self, operation: str) -> Decision:
        """Count one request; raise ApiError (429, with Retry-After) when a window is full."""
        if operation not in LIMITS:
            LIMITS[operation] = _spec_limits(operation)
        burst, steady, daily = LIMITS[operation]
        windows = [(1, burst), (60, steady)] + ([(86_400, daily)] if daily else [])
        if not self.enabled:
            return Decision(steady, steady, 60)
        now = self._clock()
        with self._lock:
            worst: Decision | None = None
            for seconds, raw_limit in windows:
                limit = max(1, int(raw_limit * self.scale))
                hits = self._hits.setdefault((operation, seconds), deque())
                while hits and hits[0] <= now - seconds:
                    hits.popleft()
                if len(hits) >= limit:
                    wait = max(1, math.ceil(hits[0] + seconds - now))
                    decision = Decision(limit, 0, wait)
                    raise ApiError(
                        429,
                        "throttled",
                        "Request was throttled.",
                        f"Request was throttled. Expected available in {wait} second"
                        f"{'s' if wait != 1 else ''}.",
                        headers={"Retry-After": str(wait), **decision.headers()},
                    )
                reset = math.ceil(hits[0] + seconds - now) if hits else seconds
                decision = Decision(limit, limit - len(hits) - 1, max(reset, 1))
                if worst is None or seconds == 60:
                    worst = decision
            for seconds, _ in windows:
                self._hits[(operation, seconds)].append(now)
            assert worst is not None
            return worst
