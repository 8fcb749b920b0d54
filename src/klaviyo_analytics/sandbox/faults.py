"""Inject latency and faults into `/api/` responses (an ASGI middleware).

Faults are drawn once per request from one RNG: seeded (`FaultOptions.seed`) they repeat exactly
for the same sequence of requests. A connection reset aborts the TCP connection before any byte
of the response is written, so a client sees the connection drop.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from dataclasses import replace
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from klaviyo_analytics.sandbox.apierror import ApiError
from klaviyo_analytics.sandbox.config import FaultOptions

logger = logging.getLogger(__name__)


class FaultInjector:
    """Hold the current fault options and draw each request's fate."""

    def __init__(self, options: FaultOptions) -> None:
        """Start with `options` (replace them later with `configure`)."""
        self._lock = threading.Lock()
        self.options = options
        self._rng = random.Random(options.seed)
        self.counts: dict[str, int] = {}

    def configure(self, **changes: Any) -> FaultOptions:
        """Replace some knobs (and reseed when `seed` is given); raise ConfigurationError if bad."""
        with self._lock:
            self.options = replace(self.options, **changes)
            if "seed" in changes:
                self._rng = random.Random(self.options.seed)
            return self.options

    def reset(self) -> None:
        """Turn every fault off."""
        with self._lock:
            self.options = FaultOptions()
            self._rng = random.Random()

    def draw(self) -> tuple[float, str | None]:
        """Return the delay (seconds) and the fault (or None) for the next request."""
        with self._lock:
            o = self.options
            delay = o.latency_ms / 1000
            if o.latency_jitter_ms:
                delay += self._rng.uniform(0, o.latency_jitter_ms) / 1000
            roll = self._rng.random()
            fault = None
            edge = 0.0
            for name, p in (
                ("429", o.p429), ("500", o.p500), ("503", o.p503), ("timeout", o.p_timeout),
                ("malformed", o.p_malformed), ("truncated", o.p_truncated), ("reset", o.p_reset),
            ):  # fmt: skip
                edge += p
                if roll < edge:
                    fault = name
                    break
            if fault:
                self.counts[fault] = self.counts.get(fault, 0) + 1
            return delay, fault


class FaultMiddleware:
    """Apply a FaultInjector's draws to requests under `/api/`."""

    def __init__(self, app: ASGIApp, injector: FaultInjector) -> None:
        """Wrap `app`."""
        self.app = app
        self.injector = injector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Delay, fail or corrupt the request as drawn; pass it through otherwise."""
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        delay, fault = self.injector.draw()
        if delay:
            await asyncio.sleep(delay)
        if fault is None:
            await self.app(scope, receive, send)
        elif fault in ("429", "500", "503"):
            await _send_error(send, _ERRORS[fault])
        elif fault == "timeout":
            await _wait_or_disconnect(receive, self.injector.options.timeout_s)
            await _send_error(send, _ERRORS["504"])
        elif fault == "reset":
            await _reset(send)
        else:
            await self._corrupt(scope, receive, send, fault)

    async def _corrupt(self, scope: Scope, receive: Receive, send: Send, fault: str) -> None:
        start: Message = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        body = b"".join(chunks)
        if fault == "truncated":
            body = body[: max(1, len(body) // 2)]
        else:
            body = b'{"data": [{"type": "event", "id": ' + body[:40] + b"\x00<<garbage>>"
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": start.get("status", 200),
                    "headers": headers})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


_ERRORS = {
    "429": ApiError(429, "throttled", "Request was throttled.",
                    "Request was throttled. Expected available in 1 second.",
                    headers={"Retry-After": "1"}),
    "500": ApiError(500, "error", "A server error occurred.", "Injected internal error."),
    "503": ApiError(503, "service_unavailable", "Service unavailable.",
                    "Injected unavailability.", headers={"Retry-After": "1"}),
    "504": ApiError(504, "timeout", "Gateway timeout.", "Injected timeout."),
}  # fmt: skip


async def _send_error(send: Send, error: ApiError) -> None:
    body = orjson.dumps(error.body())
    headers = [(b"content-type", b"application/vnd.api+json"),
               (b"content-length", str(len(body)).encode())]  # fmt: skip
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _wait_or_disconnect(receive: Receive, seconds: float) -> None:
    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    try:
        await asyncio.wait_for(disconnected(), timeout=seconds)
    except TimeoutError:
        return


async def _reset(send: Send) -> None:
    transport = _current_transport()
    if transport is not None:
        # abort() drops the connection at once (RST), without writing a response.
        transport.abort()
        # Let uvicorn see the connection as lost, so it does not try to answer.
        for _ in range(3):
            await asyncio.sleep(0)
        return
    # Not under uvicorn: start a response that promises a body, then stop.
    logger.warning("cannot reach the transport; simulating a reset with a cut response")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"1000")]})  # fmt: skip


def _current_transport() -> asyncio.Transport | None:
    # uvicorn runs each request as a task whose coroutine is its cycle's run_asgi; the cycle
    # holds the connection's transport. This is the one place the sandbox reaches into uvicorn.
    task = asyncio.current_task()
    if task is None:
        return None
    coro = task.get_coro()
    frame = getattr(coro, "cr_frame", None)
    cycle = frame.f_locals.get("self") if frame is not None else None
    transport = getattr(cycle, "transport", None)
    return transport if isinstance(transport, asyncio.Transport) else None
