"""Conformance: Airbyte's Klaviyo connector (airbyte-source-klaviyo 2.13.1) reads the sandbox.

The connector, written and tested against the real API, is pip-installed into a scratch virtual
environment of its own by `tests/conformance/airbyte.py` (cached, so reruns are quick; the
sync benchmark uses the same install), with its base URL made a config value; the test runs
`check`, `discover` and `read` of every stream discovered against a small sandbox, and compares
the record counts of the streams both tools have with ours after `sync_all`.

It skips, with pip's reason, only when the package cannot be installed.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from klaviyo_analytics.sandbox.config import StoreOptions
from klaviyo_analytics.sandbox.server import SandboxServer
from tests.conformance.airbyte import AirbyteUnavailableError, install
from tests.fixtures.sandbox import SandboxFactory
from tests.fixtures.sync import sync_service

pytestmark = [pytest.mark.conformance, pytest.mark.timeout(600)]

# A store whose history ends yesterday, so the connector's slices (from its start date to the
# wall clock) stay few: flows are read in 30-day slices under a 60-a-minute budget.
_TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
STORE = StoreOptions(seed=11, profiles=300, days=7, campaigns=4, flows=5, end=_TODAY)


@pytest.fixture(scope="session")
def airbyte() -> Path:
    """Return the `source-klaviyo` entry point of the scratch venv, installing it if needed."""
    try:
        return install()
    except AirbyteUnavailableError as exc:
        pytest.skip(str(exc))


def _run(entry: Path, *args: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [str(entry), *args], capture_output=True, text=True, timeout=480, check=False
    )
    messages = []
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            messages.append(json.loads(line))
    assert messages, f"{args[0]} printed nothing; exit {done.returncode}: {done.stderr[-2000:]}"
    return messages


def _errors(messages: list[dict[str, Any]]) -> list[str]:
    out = []
    for m in messages:
        trace = m.get("trace", {})
        if m["type"] == "TRACE" and trace.get("type") == "ERROR":
            out.append(str(trace["error"].get("message"))[:500])
        if m["type"] == "LOG" and m["log"]["level"] in ("ERROR", "FATAL"):
            out.append(m["log"]["message"][:500])
    return out


def _final_status(messages: list[dict[str, Any]]) -> dict[str, str]:
    status = {}
    for m in messages:
        trace = m.get("trace", {})
        if m["type"] == "TRACE" and trace.get("type") == "STREAM_STATUS":
            s = trace["stream_status"]
            status[s["stream_descriptor"]["name"]] = s["status"]
    return status


def _ours(conninfo: str) -> dict[str, int]:
    queries = {
        "metrics": "SELECT count(*) FROM klaviyo_metrics",
        "profiles": "SELECT count(*) FROM klaviyo_profiles WHERE NOT is_stub",
        "events": "SELECT count(*) FROM klaviyo_events",
        "campaigns": "SELECT count(*) FROM klaviyo_campaigns",
        "campaign_messages": "SELECT count(*) FROM klaviyo_campaign_messages",
        "flows": "SELECT count(*) FROM klaviyo_flows",
        "lists": "SELECT count(*) FROM klaviyo_lists",
        "email_templates": "SELECT count(*) FROM klaviyo_templates",
    }
    with psycopg.connect(conninfo) as conn:
        return {k: int(conn.execute(q).fetchone()[0]) for k, q in queries.items()}  # type: ignore[index,call-overload]


async def test_airbyte_reads_every_stream_and_counts_what_we_sync(
    airbyte: Path, make_sandbox: SandboxFactory, db_conninfo: str, tmp_path: Path
) -> None:
    server: SandboxServer = make_sandbox(store=STORE)
    # Profiles were created up to two years before the history starts; start before them all.
    start = datetime.fromtimestamp(server.generator.start_ts, UTC) - timedelta(days=731)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({
        "api_key": server.api_key, "start_date": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "url_base": f"{server.base_url}/api/", "num_workers": 4,
    }))  # fmt: skip

    check = _run(airbyte, "check", "--config", str(config))
    statuses = [m["connectionStatus"]["status"] for m in check if m["type"] == "CONNECTION_STATUS"]
    assert statuses == ["SUCCEEDED"], _errors(check)

    discover = _run(airbyte, "discover", "--config", str(config))
    streams = next(m["catalog"]["streams"] for m in discover if m["type"] == "CATALOG")
    names = sorted(s["name"] for s in streams)
    assert {"events", "profiles", "metrics", "campaigns", "flows", "lists"} <= set(names)
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"streams": [
        {"stream": s, "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"}
        for s in streams
    ]}))  # fmt: skip

    read = _run(airbyte, "read", "--config", str(config), "--catalog", str(catalog))
    assert _errors(read) == []
    assert _final_status(read) == {name: "COMPLETE" for name in names}
    records = [m["record"] for m in read if m["type"] == "RECORD"]
    theirs = Counter(r["stream"] for r in records)
    messages = sum(len(r["data"].get("campaign_messages") or []) for r in records
                   if r["stream"] == "campaigns_detailed")  # fmt: skip
    suppressed = {r["data"]["id"] for r in records if r["stream"] == "global_exclusions"}

    async with sync_service(db_conninfo, server) as service:
        results = await service.sync_all()
    assert all(r.status == "succeeded" for r in results), [(r.stream, r.status) for r in results]
    ours = _ours(db_conninfo)
    print("airbyte:", dict(sorted(theirs.items())), "campaign messages:", messages)
    print("ours:", ours)

    assert {
        "metrics": theirs["metrics"],
        "profiles": theirs["profiles"],
        "events": theirs["events"],
        "campaigns": theirs["campaigns"],
        "campaign_messages": messages,
        "flows": theirs["flows"],
        "lists": theirs["lists"],
        "email_templates": theirs["email_templates"],
    } == ours
    assert theirs["events_detailed"] == ours["events"]
    assert theirs["campaigns_detailed"] == ours["campaigns"]
    assert theirs["lists_detailed"] == ours["lists"]
    assert theirs["email_templates"] == len(server.generator.catalog.templates)
    # global_exclusions: exactly the profiles the store suppressed (bounce, spam, unsubscribe)
    facts = server.state.profile_facts.at(server.state.clock.now_ts())
    catalog_ids = {server.generator.catalog.profile_id(int(i))
                   for i in facts.suppressed_at.nonzero()[0]}  # fmt: skip
    assert suppressed == catalog_ids and suppressed
