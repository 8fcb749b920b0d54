"""Rate limits: concurrent requests of one operation are spread within its windows."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from klaviyo_analytics.klaviyo import RATE_LIMITS, RateLimit, RateLimiter
from klaviyo_analytics.klaviyo.ratelimit import PREDICTIVE_PROFILES
from klaviyo_analytics.sandbox.spec import klaviyo_spec
from tests.unit.klaviyo.helpers import (
    FakeTime,
    VirtualTime,
    event,
    jsonapi,
    make_client,
    page_body,
)


async def send_times(limiter: RateLimiter, time: FakeTime, operation: str, n: int) -> list[float]:
    times: list[float] = []

    async def one() -> None:
        await limiter.acquire(operation)
        times.append(time.now)

    await asyncio.gather(*(one() for _ in range(n)))
    return sorted(times)


async def test_concurrent_requests_are_spread_over_the_burst_window() -> None:
    time = FakeTime()
    limiter = RateLimiter({"op": RateLimit(2, 100)}, clock=time.clock, sleep=time.sleep, margin_s=0)
    assert await send_times(limiter, time, "op", 7) == [0, 0, 1, 1, 2, 2, 3]


async def test_windows_keep_a_margin_for_network_jitter() -> None:
    time = FakeTime()
    limiter = RateLimiter({"op": RateLimit(2, 100)}, clock=time.clock, sleep=time.sleep)
    assert await send_times(limiter, time, "op", 3) == [0, 0, pytest.approx(1.1)]


async def test_the_steady_window_holds_requests_for_the_rest_of_the_minute() -> None:
    time = FakeTime()
    limiter = RateLimiter(
        {"op": RateLimit(1, 2, 225)}, clock=time.clock, sleep=time.sleep, margin_s=0
    )
    assert await send_times(limiter, time, "op", 5) == [0, 1, 60, 61, 120]


async def test_no_sliding_minute_ever_holds_more_than_the_steady_limit() -> None:
    time = FakeTime()
    limiter = RateLimiter({"op": RateLimit(5, 12)}, clock=time.clock, sleep=time.sleep, margin_s=0)
    times = await send_times(limiter, time, "op", 60)
    for start in times:
        assert sum(start <= t < start + 60 for t in times) <= 12
        assert sum(start <= t < start + 1 for t in times) <= 5


async def test_the_daily_limit_is_a_window_too() -> None:
    time = FakeTime()
    limiter = RateLimiter(
        {"op": RateLimit(10, 100, 3)}, clock=time.clock, sleep=time.sleep, margin_s=0
    )
    assert await send_times(limiter, time, "op", 4) == [0, 0, 0, 86_400]


async def test_operations_are_limited_independently() -> None:
    time = FakeTime()
    limits = {"slow": RateLimit(1, 60), "fast": RateLimit(100, 1000)}
    limiter = RateLimiter(limits, clock=time.clock, sleep=time.sleep, margin_s=0)
    await limiter.acquire("slow")
    await limiter.acquire("fast")
    await limiter.acquire("fast")
    assert time.now == 0


async def test_a_block_holds_every_request_of_the_operation() -> None:
    time = FakeTime()
    limiter = RateLimiter(
        {"op": RateLimit(10, 100)}, clock=time.clock, sleep=time.sleep, margin_s=0
    )
    limiter.block("op", 30)
    assert await send_times(limiter, time, "op", 2) == [30, 30]


async def test_the_client_spreads_concurrent_calls_of_an_operation() -> None:
    time = FakeTime()
    arrivals: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        arrivals.append(time.now)
        return jsonapi(page_body([event("e1")]))

    limiter = RateLimiter(RATE_LIMITS, clock=time.clock, sleep=time.sleep, margin_s=0)
    async with make_client(handler, time, limiter=limiter) as client:

        async def list_flows() -> None:
            async for _ in client.iter_flows():
                pass

        await asyncio.gather(*(list_flows() for _ in range(7)))
    # get_flows allows 3/s
    assert sorted(arrivals) == [0, 0, 0, 1, 1, 1, 2]


async def test_a_429_holds_the_other_requests_of_that_operation_too() -> None:
    time = VirtualTime()
    arrivals: list[float] = []
    answered_429 = False

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal answered_429
        arrivals.append(time.now)
        if not answered_429:
            answered_429 = True
            return jsonapi({"errors": []}, 429, **{"Retry-After": "10"})
        return jsonapi(page_body([]))

    limiter = RateLimiter(
        {"get_lists": RateLimit(1, 100)}, clock=time.clock, sleep=time.sleep, margin_s=0
    )
    async with make_client(handler, time, limiter=limiter) as client:

        async def list_lists() -> None:
            async for _ in client.iter_lists():
                pass

        await time.run(asyncio.gather(list_lists(), list_lists()))
    # the second request would have gone at t=1, but waits out the first one's Retry-After
    assert arrivals == [0, 10, 11]


def test_the_rate_limit_table_matches_the_spec() -> None:
    spec = klaviyo_spec()
    found: dict[str, RateLimit] = {}
    for item in spec["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict) and operation.get("operationId") in RATE_LIMITS:
                raw = operation["x-klaviyo-ratelimit"]
                daily = raw.get("daily")
                found[operation["operationId"]] = RateLimit(
                    int(raw["burst"].removesuffix("/s")),
                    int(raw["steady"].removesuffix("/m")),
                    int(daily.removesuffix("/d")) if daily else None,
                )
    # Profiles with predictive analytics: the lower limits the description states.
    text = spec["paths"]["/api/profiles"]["get"]["description"]
    tail = text[text.index("`additional-fields[profile]=predictive_analytics`") :]
    burst = re.search(r"Burst: `(\d+)/s`", tail)
    steady = re.search(r"Steady: `(\d+)/m`", tail)
    assert burst and steady
    found[PREDICTIVE_PROFILES] = RateLimit(int(burst[1]), int(steady[1]))
    assert found == dict(RATE_LIMITS)
    assert RATE_LIMITS[PREDICTIVE_PROFILES] != RATE_LIMITS["get_profiles"]


async def test_profiles_with_predictions_wait_on_their_own_lower_limit() -> None:
    time = FakeTime()
    sent: list[tuple[float, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append((time.now, request.url.params.get("additional-fields[profile]")))
        return jsonapi(page_body([]))

    limiter = RateLimiter(RATE_LIMITS, clock=time.clock, sleep=time.sleep, margin_s=0)
    async with make_client(handler, time, limiter=limiter) as client:

        async def list_profiles(predictive: bool) -> None:
            async for _ in client.iter_profiles(predictive_analytics=predictive):
                pass

        await asyncio.gather(*(list_profiles(True) for _ in range(12)))
        await asyncio.gather(*(list_profiles(False) for _ in range(12)))
    asked = [t for t, extra in sent if extra == "predictive_analytics"]
    plain = [t for t, extra in sent if extra is None]
    # 10/s with predictive analytics; the plain listing (75/s) is not held up by them.
    assert sorted(asked) == [0] * 10 + [1, 1]
    assert len(plain) == 12 and len(set(plain)) == 1
