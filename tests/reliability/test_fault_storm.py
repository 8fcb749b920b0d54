"""A sync through a full-rate fault storm ends with exactly the data of a clean sync.

The storm is the one of issue #9: 20 % 429 (with `Retry-After: 1`), 10 % 5xx, 5 % timeouts,
2 % malformed bodies and connection resets, on a store of a few days so the test stays short.
The client honours `Retry-After` and blocks the whole operation (a rate limiter with limits far
above what the test sends, so only the 429s hold it); its timeout (1 s) is shorter than the
sandbox's injected hang (2 s), so every injected timeout is a client-side timeout.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import psycopg
import pytest

from klaviyo_analytics.klaviyo.ratelimit import RateLimit, RateLimiter
from klaviyo_analytics.retry import RetryPolicy
from klaviyo_analytics.sandbox.config import FaultOptions
from tests.fixtures.database import PgServer
from tests.fixtures.sandbox import SMALL_STORE, SandboxFactory
from tests.fixtures.sync import fingerprint, sandbox_stats, sync_service

STORE = replace(SMALL_STORE, profiles=200, days=4, campaigns=4)
STORM = FaultOptions(
    p429=0.20,
    p500=0.05,
    p503=0.05,
    p_timeout=0.05,
    timeout_s=2.0,
    p_malformed=0.02,
    p_reset=0.03,
    seed=20261122,
)
CLIENT_TIMEOUT_S = 1.0


@pytest.fixture
def clean_conninfo(pg_server: PgServer, template_db: str) -> Iterator[str]:
    name = f"ka_clean_{uuid.uuid4().hex[:12]}"
    conninfo = pg_server.create_database(name, template=template_db)
    yield conninfo
    pg_server.drop_database(name)


def run_history(conninfo: str) -> list[tuple[str, str, int, int, int, int, int]]:
    with psycopg.connect(conninfo) as conn:
        return [
            (r[0], r[1], r[2], r[3], r[4], r[5], r[6])
            for r in conn.execute(
                "SELECT stream, status, api_calls, retries, rate_limited, errors, quarantined"
                " FROM sync_runs ORDER BY id"
            )
        ]


def quarantine(conninfo: str) -> list[tuple[str, str]]:
    with psycopg.connect(conninfo) as conn:
        return [(r[0], r[1]) for r in conn.execute("SELECT stream, reason FROM sync_quarantine")]


async def test_a_full_rate_storm_ends_with_the_clean_data_and_records_every_retry(
    db_conninfo: str, clean_conninfo: str, make_sandbox: SandboxFactory
) -> None:
    assert STORM.timeout_s > CLIENT_TIMEOUT_S  # else a "timeout" is just a slow 504
    clean_server = make_sandbox(store=STORE)
    stormy = make_sandbox(store=STORE, faults=STORM)
    async with sync_service(clean_conninfo, clean_server) as service:
        clean = await service.sync_all()
    assert all(r.status == "succeeded" for r in clean)
    clean_history = run_history(clean_conninfo)
    assert sum(h[5] for h in clean_history) == 0  # no error at all without faults

    limiter = RateLimiter(limits={}, default=RateLimit(10_000, 600_000), margin_s=0)
    started = time.monotonic()
    async with sync_service(
        db_conninfo,
        stormy,
        retry=RetryPolicy(attempts=14, base_s=0.01, cap_s=0.1, deadline_s=120),
        timeout_s=CLIENT_TIMEOUT_S,
        rate_limits_enabled=True,
        rate_limiter=limiter,
    ) as service:
        stormy_results = await service.sync_all()
    took = time.monotonic() - started

    assert all(r.status == "succeeded" for r in stormy_results), [
        (r.stream, r.error) for r in stormy_results
    ]
    # Same data as the clean run: every synced table, row for row.
    assert fingerprint(db_conninfo) == fingerprint(clean_conninfo)

    injected = sandbox_stats(stormy)["faults_injected"]
    assert {"429", "500", "503", "timeout", "malformed", "reset"} <= set(injected), injected
    history = run_history(db_conninfo)
    assert {h[1] for h in history} == {"succeeded"}
    retries = sum(h[3] for h in history)
    rate_limited = sum(h[4] for h in history)
    errors = sum(h[5] for h in history)
    # Every failed try was retried (nothing failed for good), and the history says so.
    assert retries == rate_limited + errors
    # The runs' counters add up to what the sandbox injected, give or take the few faults that
    # hit the account check before the first run (the only calls outside a run).
    assert rate_limited > 0 and errors > 0
    assert rate_limited + errors <= sum(injected.values()) <= rate_limited + errors + 10, (
        injected,
        rate_limited,
        errors,
    )
    # Every 429 was waited out: its Retry-After of 1 s, at least, per 429 of each operation.
    assert took >= 1.0 * min(rate_limited, 3)

    # Every quarantined record has a reason, and the history counts each one.
    held = quarantine(db_conninfo)
    assert all(reason.strip() for _stream, reason in held), held
    assert len(held) == sum(h[6] for h in history) == sum(h[6] for h in clean_history)
