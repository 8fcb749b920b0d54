"""A real uvicorn server on 127.0.0.1 in a thread, serving create_app over a synced database.

Used by the browser tests and by bench/bench_page.py: the page talks to it exactly as it would
to `klaviyo-analytics serve`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from klaviyo_analytics.api.app import create_app
from klaviyo_analytics.api.auth import create_key
from klaviyo_analytics.config import Settings
from klaviyo_analytics.db.pool import Database


async def _create_keys(conninfo: str) -> tuple[str, str]:
    async with Database(conninfo, min_size=1, max_size=1) as db:
        admin = await db.run(lambda c: create_key(c, name="e2e-admin", role="admin"))
        reader = await db.run(lambda c: create_key(c, name="e2e-reader", role="reader"))
    return admin.token, reader.token


def create_keys(conninfo: str) -> tuple[str, str]:
    """Create an admin and a reader key in the database; return their tokens.

    Runs in a thread of its own: the caller may be inside a running event loop (pytest-asyncio).
    """
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _create_keys(conninfo)).result()


@dataclass
class LiveServer:
    """uvicorn serving `app` on a free port of 127.0.0.1 until stopped."""

    app: FastAPI
    start_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on", log_config=None)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the dashboard server did not start")
            time.sleep(0.02)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.should_exit = True
        self._thread.join(30)
        self._sock.close()


def serve_dashboard(
    settings: Settings, conninfo: str, *, clock: Callable[[], datetime] | None = None
) -> LiveServer:
    """Return a (not yet started) server of the whole app on `conninfo`."""
    if clock is None:
        return LiveServer(create_app(settings, conninfo=conninfo))
    return LiveServer(create_app(settings, conninfo=conninfo, clock=clock))
