"""`apikey` and `serve` as a user runs them: real processes, a real uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import psycopg

from klaviyo_analytics.api.auth import create_key
from klaviyo_analytics.db.pool import Database


def cli_env(conninfo: str) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DB_", "DATABASE_URL", "KLAVIYO_", "REDIS_URL"))
    }
    return {**base, "DATABASE_URL": conninfo, "LOG_LEVEL": "WARNING"}


def run_cli(*args: str, conninfo: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "klaviyo_analytics.cli", *args],
        env=cli_env(conninfo),
        capture_output=True,
        text=True,
        timeout=120,
    )


async def reader_key(conninfo: str) -> str:
    async with Database(conninfo, min_size=1, max_size=1) as db:
        created = await db.run(lambda c: create_key(c, name="web", role="reader"))
    return created.token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_apikey_create_list_revoke_shows_the_token_once_and_stores_a_hash(
    db_conninfo: str,
) -> None:
    created = run_cli("apikey", "create", "--name", "ops", "--role", "admin", conninfo=db_conninfo)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("ka_") and len(token) > 40
    listed = run_cli("apikey", "list", conninfo=db_conninfo)
    assert listed.returncode == 0 and "ops" in listed.stdout and token not in listed.stdout
    revoked = run_cli("apikey", "revoke", "1", conninfo=db_conninfo)
    assert revoked.returncode == 0 and "revoked key 1" in revoked.stdout
    with psycopg.connect(db_conninfo) as conn:
        stored = conn.execute("SELECT token_hash, revoked_at IS NOT NULL FROM api_keys").fetchall()
        actions = [r[0] for r in conn.execute("SELECT action FROM audit_log ORDER BY id")]
    assert len(stored) == 1 and stored[0][0] != token and stored[0][1] is True
    assert actions == ["apikey.create", "apikey.revoke"]


def test_serve_migrates_and_answers_over_http(empty_db_conninfo: str) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "klaviyo_analytics.cli", "serve", "--port", str(port)],
        env=cli_env(empty_db_conninfo),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.communicate()[1]
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.1)
        token = asyncio.run(reader_key(empty_db_conninfo))
        account = httpx.get(f"{base}/api/account", headers={"X-API-Key": token}, timeout=10)
        assert account.status_code == 200, account.text
        assert account.json()["source"] == "database" and account.json()["timezone"] == "UTC"
        assert httpx.get(f"{base}/api/account", timeout=10).status_code == 401
        assert httpx.get(f"{base}/health/ready", timeout=10).json()["checks"][0]["status"] == "ok"
        assert "/api/overview" in httpx.get(f"{base}/openapi.json", timeout=10).text
    finally:
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=30)
    assert token not in err  # keys are never logged
