"""Builders of Klaviyo-shaped documents and a simulated clock for the client's unit tests."""

from __future__ import annotations

import asyncio
import heapq
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx

from klaviyo_analytics.klaviyo import KlaviyoClient, RateLimiter
from klaviyo_analytics.retry import RetryPolicy

API_KEY = "pk_SECRET_0123456789abcdef"
BASE = "https://a.klaviyo.test"

Handler = Callable[[httpx.Request], Awaitable[httpx.Response] | httpx.Response]


class FakeTime:
    """A clock that only moves when someone sleeps; records every requested sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class VirtualTime(FakeTime):
    """A simulated clock for concurrent tasks: sleepers wake in order of their wake-up time.

    `run` drives a coroutine: whenever every task is blocked on a virtual sleep, time jumps to
    the earliest wake-up. Handlers must not do real I/O (MockTransport handlers do not).
    """

    def __init__(self) -> None:
        super().__init__()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._counter = 0

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._counter += 1
        heapq.heappush(self._sleepers, (self.now + seconds, self._counter, future))
        await future

    async def run(self, main: Awaitable[Any]) -> Any:
        task = asyncio.ensure_future(main)
        while not task.done():
            for _ in range(100):
                await asyncio.sleep(0)
                if task.done():
                    break
            if task.done() or not self._sleepers:
                continue
            wake, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, wake)
            future.set_result(None)
        return task.result()


def policy(
    time: FakeTime, *, attempts: int = 4, deadline_s: float | None = None, jitter: bool = False
) -> RetryPolicy:
    return RetryPolicy(
        attempts=attempts,
        base_s=0.1,
        cap_s=2.0,
        factor=2.0,
        jitter=jitter,
        deadline_s=deadline_s,
        sleep=time.sleep,
        clock=time.clock,
    )


class Recorder:
    """A MockTransport handler that answers from a script and records the requests."""

    def __init__(self, *responses: httpx.Response | Exception | Handler) -> None:
        self.script = list(responses)
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            return step
        result = step(request)
        if isinstance(result, httpx.Response):
            return result
        return await result


def make_client(
    handler: Callable[[httpx.Request], Any],
    time: FakeTime | None = None,
    *,
    attempts: int = 4,
    deadline_s: float | None = None,
    limiter: RateLimiter | None = None,
) -> KlaviyoClient:
    time = time or FakeTime()
    return KlaviyoClient(
        api_key=API_KEY,
        base_url=BASE,
        retry=policy(time, attempts=attempts, deadline_s=deadline_s),
        transport=httpx.MockTransport(handler),
        rate_limits_enabled=limiter is not None,
        rate_limiter=limiter,
    )


def jsonapi(body: dict[str, Any], status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"content-type": "application/vnd.api+json", **headers},
    )


def error_body(status: int, code: str, detail: str, parameter: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {
        "id": "e1f2",
        "status": status,
        "code": code,
        "title": code.replace("_", " ").title(),
        "detail": detail,
    }
    if parameter:
        error["source"] = {"parameter": parameter}
    return {"errors": [error]}


def event(
    ident: str,
    when: str = "2024-03-01T12:00:00+00:00",
    *,
    metric_id: str | None = "M1",
    profile_id: str | None = "P1",
    attributions: Sequence[str] = (),
    properties: dict[str, Any] | None = None,
) -> dict[str, Any]:
    relationships: dict[str, Any] = {
        "attributions": {"data": [{"type": "attribution", "id": a} for a in attributions]}
    }
    if metric_id is not None:
        relationships["metric"] = {"data": {"type": "metric", "id": metric_id}}
    if profile_id is not None:
        relationships["profile"] = {"data": {"type": "profile", "id": profile_id}}
    return {
        "type": "event",
        "id": ident,
        "attributes": {
            "timestamp": 1709294400,
            "datetime": when,
            "uuid": f"uuid-{ident}",
            "event_properties": properties if properties is not None else {"$value": 10.5},
        },
        "relationships": relationships,
        "links": {"self": f"{BASE}/api/events/{ident}"},
    }


def page_body(
    data: list[dict[str, Any]],
    next_url: str | None = None,
    included: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"data": data, "links": {"self": f"{BASE}/api/x", "next": next_url}}
    if included is not None:
        body["included"] = included
    return body
