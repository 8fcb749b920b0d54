"""SIGTERM to `serve` and `demo` stops the embedded PostgreSQL they started: no server is left.

Each case runs the real command in its own process, with its own KLAVIYO_ANALYTICS_HOME (so its
own embedded server), waits until the API answers, sends SIGTERM and looks for the server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from klaviyo_analytics.db.embedded import EmbeddedPostgres

START_TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_pid(data_dir: Path) -> int | None:
    """Return the pid of a live postmaster on `data_dir`, if any."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_sigterm_stops_the_embedded_server_cleanly(command: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "PG", "DATABASE_"))}
    env.update(KLAVIYO_ANALYTICS_HOME=str(home), KLAVIYO_BASE_URL="http://127.0.0.1:1")
    env["PYTHONUNBUFFERED"] = "1"  # each line reaches the log when printed
    env.pop("KLAVIYO_API_KEY", None)
    args = ["serve", "--port", str(port)]
    if command == "demo":
        args = ["demo", "--port", str(port), "--profiles", "100", "--days", "7"]
    log = tmp_path / f"{command}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "klaviyo_analytics.cli", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    data_dir = home / "pgdata"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        url = f"http://127.0.0.1:{port}/"
        while True:
            assert proc.poll() is None, log.read_text()
            if command == "demo":
                # The demo prints its URL only once the server answers: the first try works.
                if url in log.read_text():
                    assert httpx.get(url, timeout=5).status_code == 200
                    break
            else:
                try:
                    if httpx.get(f"{url}health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
            assert time.monotonic() < deadline, f"{command} did not come up"
            time.sleep(0.3)
        assert server_pid(data_dir) is not None
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=90)
        assert code == 0, log.read_text()
        assert server_pid(data_dir) is None, "the embedded PostgreSQL is still running"
        assert not (data_dir / "postmaster.pid").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if server_pid(data_dir) is not None:  # clean up after a failure
            leftover = EmbeddedPostgres(data_dir).start()
            leftover._started_here = True
            leftover.stop()
