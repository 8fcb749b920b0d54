"""No secret in any output: a demo-like run at DEBUG, with distinctive secrets, grepped.

The Klaviyo key, the database password (a login role with a password, in DATABASE_URL) and the
API keys' tokens must never appear in a log line or an error of `sync`, `serve` (with API calls
made to it) or `apikey create` (whose stdout is the token itself, by design: that one line is
the only place a token may appear). Failures are included: a wrong Klaviyo key, an unreachable
database. A reader key cannot start a sync, list, create or revoke keys (403), and the
database stores no token.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from urllib.parse import quote

import httpx
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from tests.fixtures.database import PgServer
from tests.fixtures.sandbox import SMALL_STORE, SandboxFactory

KLAVIYO_KEY = "pk_SeCrEtKlaviyo_4f1d9a7c2b"
DB_PASSWORD = "pw-SeCrEtDatabase-8e3b6c"


@pytest.fixture
def role_url(pg_server: PgServer, db_name: str) -> Iterator[str]:
    """A DATABASE_URL for this test's database, as a login role with a distinctive password."""
    role = f"ka_sec_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.admin_conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(DB_PASSWORD)
            )
        )
    params = conninfo_to_dict(pg_server.conninfo(db_name))
    host, port = str(params.get("host", "127.0.0.1")), str(params.get("port", "5432"))
    if host.startswith("/"):  # a socket folder goes in the query string
        url = f"postgresql://{role}:{quote(DB_PASSWORD)}@/{db_name}?host={quote(host)}&port={port}"
    else:
        url = f"postgresql://{role}:{quote(DB_PASSWORD)}@{host}:{port}/{db_name}"
    yield url
    # The sync ran as this role, so it owns what it created in the test's database (a month's
    # partition, say): drop that there, then the role.
    for conninfo in (pg_server.conninfo(db_name), pg_server.admin_conninfo):
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    with psycopg.connect(pg_server.admin_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def env_for(url: str, base_url: str, key: str = KLAVIYO_KEY) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DB_", "DATABASE_URL", "KLAVIYO_", "REDIS_URL"))
    }
    return {
        **base,
        "DATABASE_URL": url,
        "KLAVIYO_API_KEY": key,
        "KLAVIYO_BASE_URL": base_url,
        "LOG_LEVEL": "DEBUG",
    }


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "klaviyo_analytics.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_secret_reaches_any_output_of_a_debug_run(
    role_url: str, make_sandbox: SandboxFactory
) -> None:
    sandbox = make_sandbox(store=replace(SMALL_STORE, profiles=200, days=5), api_key=KLAVIYO_KEY)
    env = env_for(role_url, sandbox.base_url)
    outputs: dict[str, str] = {}

    synced = cli("sync", "events", env=env)
    outputs["sync events"] = synced.stdout + synced.stderr
    assert synced.returncode == 0, outputs["sync events"]
    assert "DEBUG" in synced.stderr  # the run really logged at DEBUG (requests, SQL)

    wrong_key = cli("sync", "metrics", env=env_for(role_url, sandbox.base_url, key="pk_wrong_1"))
    outputs["sync with a wrong key"] = wrong_key.stdout + wrong_key.stderr
    assert wrong_key.returncode != 0 and "401" in outputs["sync with a wrong key"]

    # A closed port on 127.0.0.1, whatever form (socket or TCP) the server's URL has.
    params = conninfo_to_dict(role_url)
    unreachable = (
        f"postgresql://{params['user']}:{quote(DB_PASSWORD)}@127.0.0.1:{free_port()}"
        f"/{params['dbname']}"
    )
    unreachable_env = {**env, "DATABASE_URL": unreachable, "DB_MAX_RETRIES": "0"}
    down = cli("migrate", env=unreachable_env)
    outputs["migrate, database unreachable"] = down.stdout + down.stderr
    assert down.returncode != 0

    tokens: dict[str, str] = {}
    for role in ("admin", "reader"):
        made = cli("apikey", "create", "--role", role, "--name", f"sec-{role}", env=env)
        assert made.returncode == 0, made.stderr
        tokens[role] = made.stdout.strip().splitlines()[-1]
        outputs[f"apikey create {role} (stderr)"] = made.stderr  # stdout is the token, by design

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "klaviyo_analytics.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    statuses: dict[str, int] = {}
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        admin = {"X-API-Key": tokens["admin"]}
        reader = {"X-API-Key": tokens["reader"]}
        with httpx.Client(base_url=base, timeout=60) as http:
            calls = {
                "overview (reader)": ("GET", "/api/overview", reader, None),
                "keys (admin)": ("GET", "/api/keys", admin, None),
                "keys (reader)": ("GET", "/api/keys", reader, None),
                "create key (reader)": (
                    "POST",
                    "/api/keys",
                    reader,
                    {"name": "x", "role": "admin"},
                ),
                "revoke key (reader)": ("DELETE", "/api/keys/1", reader, None),
                "sync (reader)": ("POST", "/api/sync/metrics", reader, None),
                "cache clear (reader)": ("POST", "/api/cache/clear", reader, None),
                "wrong key": ("GET", "/api/overview", {"X-API-Key": "ka_wrong"}, None),
                "sync (admin)": ("POST", "/api/sync/metrics", admin, None),
                "metrics": ("GET", "/metrics", {}, None),
            }
            for name, (method, path, headers, body) in calls.items():
                response = http.request(method, path, headers=headers, json=body)
                statuses[name] = response.status_code
                outputs[f"HTTP {name}"] = response.text
            time.sleep(2)  # let the admin's sync run and log
    finally:
        server.send_signal(signal.SIGINT)
        try:
            out, _ = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            out, _ = server.communicate()
        outputs["serve"] = out

    assert statuses["overview (reader)"] == 200 and statuses["keys (admin)"] == 200
    for name in ("keys", "create key", "revoke key", "sync", "cache clear"):
        assert statuses[f"{name} (reader)"] == 403, (name, statuses)
    # 409: the server may be running a sync of its own already; either way the admin may.
    assert statuses["wrong key"] == 401 and statuses["sync (admin)"] in (202, 409), statuses
    assert "DEBUG" in outputs["serve"]

    secrets = {"Klaviyo key": KLAVIYO_KEY, "database password": DB_PASSWORD, **tokens}
    leaks = [
        f"{what} in {where}"
        for where, text in outputs.items()
        for what, secret in secrets.items()
        if secret in text or quote(secret) in text
    ]
    assert not leaks, leaks

    with psycopg.connect(role_url) as conn:
        dump = conn.execute("SELECT string_agg(t::text, '|') FROM api_keys t").fetchone()
    assert dump is not None and dump[0]
    assert not any(token in dump[0] for token in tokens.values())
