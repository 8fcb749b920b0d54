"""What the benchmarks share: a scratch database (migrated, on DATABASE_URL's server or a fresh
embedded PostgreSQL, dropped when the benchmark ends), a free port and a sandbox process."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from psycopg.conninfo import make_conninfo

from klaviyo_analytics.db import databases
from klaviyo_analytics.db.embedded import EmbeddedPostgres
from klaviyo_analytics.db.migrate import migrate


def server_label() -> str:
    """Say which server the scratch database lives on."""
    return "DATABASE_URL" if os.environ.get("DATABASE_URL") else "embedded PostgreSQL"


@contextmanager
def scratch_database(prefix: str = "bench") -> Iterator[str]:
    """Yield the connection string of a new, migrated database; drop it afterwards."""
    url = os.environ.get("DATABASE_URL")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        server = None if url else EmbeddedPostgres(Path(tmp) / "pgdata").start()
        admin = url or server.conninfo()  # type: ignore[union-attr]
        try:
            databases.create_database(admin, name)
            target = make_conninfo(admin, dbname=name)
            asyncio.run(migrate(target))
            yield target
        finally:
            databases.drop_database(admin, name)
            if server is not None:
                server.stop()


def free_port() -> int:
    """Return a TCP port nobody listens on at 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sandbox(*options: str, wait_s: float = 120) -> tuple[subprocess.Popen[bytes], str]:
    """Start `klaviyo-analytics sandbox` with `options` on a free port in its own process;
    return it and its base URL once it answers. Exits the benchmark if it never does."""
    port = free_port()
    command = [sys.executable, "-m", "klaviyo_analytics.cli", "sandbox", "--port", str(port),
               *options]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/admin/stats", timeout=60).raise_for_status()
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the sandbox did not start")
