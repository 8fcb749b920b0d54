"""Resource bounds of the API (issue 14, items 1-4): heavy analytics off the event loop and
size-limited, a byte-bounded cache that refuses unknown parameters, unrepresentable dates as
422, and unauthenticated traffic that costs (almost) no database work.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
import uvicorn

from klaviyo_analytics.analytics import timeseries
from klaviyo_analytics.api.app import create_app
from klaviyo_analytics.api.auth import create_key
from klaviyo_analytics.api.cache import MemoryCache
from klaviyo_analytics.api.deps import AppState
from klaviyo_analytics.db.pool import Database
from tests.integration.api.conftest import Api, ApiFactory, api_settings

HOURLY = "HOURLY1"
HOURS = 250 * 24


def resources(api: Api) -> AppState:
    state: AppState = api.app.state.resources
    return state


def add_hourly_metric(conninfo: str) -> None:
    """Give the database a metric with HOURS hourly buckets ending 2026-07-01 (UTC)."""
    end = datetime(2026, 7, 1, tzinfo=UTC)
    with psycopg.connect(conninfo) as conn:
        conn.execute("INSERT INTO klaviyo_metrics (id, name) VALUES (%s, 'Hourly')", (HOURLY,))
        with conn.cursor().copy(
            "COPY klaviyo_aggregated_metrics"
            " (metric_id, bucket_size, bucket_start, count, sum_value, unique_profiles)"
            " FROM STDIN"
        ) as copy:
            for i in range(HOURS):
                value = 50 + (i % 24) * 3 + (i * 7919) % 13
                at = end - timedelta(hours=HOURS - i)
                copy.write_row((HOURLY, "hour", at, value, value * 2, value))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(synced_conninfo: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The real app under uvicorn on 127.0.0.1 (its own thread and loop); (base URL, key)."""
    add_hourly_metric(synced_conninfo)

    async def make_key() -> str:
        async with Database(synced_conninfo, min_size=1, max_size=1) as db:
            created = await db.run(lambda c: create_key(c, name="served", role="reader"))
        return created.token

    token = asyncio.run(make_key())
    settings = api_settings(tmp_path, None, account_timezone="UTC")
    app = create_app(settings, conninfo=synced_conninfo)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", token
    finally:
        server.should_exit = True
        thread.join(30)


async def test_health_answers_while_a_heavy_decomposition_runs(
    served: tuple[str, str],
) -> None:
    base, token = served
    headers = {"X-API-Key": token}
    heavy_params = {
        "interval": "hour",
        # Few buckets, a long period: the most fitting per bucket served that the limits allow.
        "period": "100",
        "start": "2026-05-02",
        "end": "2026-06-30",
    }
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
        # A small fit first, so that the heavy one does not also wait for workers to start.
        small = await http.get(
            f"/api/analytics/decomposition/{HOURLY}",
            params={"interval": "day", "start": "2026-05-01", "end": "2026-06-30"},
        )
        assert small.status_code == 200, small.text
        # CPU time of this process: the server (its thread) and this client, not the workers.
        cpu_before = time.process_time()
        heavy = asyncio.create_task(
            http.get(f"/api/analytics/decomposition/{HOURLY}", params=heavy_params)
        )
        answered = 0
        while not heavy.done():
            health = await http.get("/health")
            assert health.status_code == 200
            answered += 1
            await asyncio.sleep(0.05)
        decomposed = await heavy
        server_cpu = time.process_time() - cpu_before
        # The same polls with no fit running, as the baseline for what polling alone costs
        # this process (server and client), measured in the same run on the same machine.
        polls_before = time.process_time()
        for _ in range(answered):
            assert (await http.get("/health")).status_code == 200
            await asyncio.sleep(0.05)
        polls_cpu = time.process_time() - polls_before
    assert decomposed.status_code == 200, decomposed.text
    values = [p["value"] for p in decomposed.json()["points"]]
    assert len(values) > 1_400
    # The same fit here, as the baseline: what the server's process would have spent on it.
    started = time.process_time()
    timeseries.stl_parts(values, 100)
    fit_cpu = time.process_time() - started
    assert answered > 3
    # The fit ran elsewhere: beyond what the polls cost on their own, serving the request
    # (reading the series, writing the answer) cost the server's process less than half the
    # fit. Had the fit run in this process (on the loop or in a thread), the excess would be at
    # least the whole fit.
    excess = server_cpu - polls_cpu
    assert excess < fit_cpu / 2, (server_cpu, polls_cpu, fit_cpu)


async def test_oversize_analyses_are_refused_at_once_naming_the_limit(
    served: tuple[str, str],
) -> None:
    base, token = served
    headers = {"X-API-Key": token}
    # Too many points, and too much work (points x period): refused at once, naming the limit.
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=20) as http:
        too_long = await http.get(
            f"/api/analytics/decomposition/{HOURLY}",
            params={
                "interval": "hour",
                "period": "366",
                "start": "2016-07-03",
                "end": "2026-07-01",
            },
        )
        too_wide = await http.get(
            f"/api/analytics/decomposition/{HOURLY}",
            params={
                "interval": "hour",
                "period": "200",
                "start": "2026-05-01",
                "end": "2026-06-30",
            },
        )
        anomalies = await http.get(
            f"/api/analytics/anomalies/{HOURLY}",
            params={"start": "2023-01-01", "end": "2026-06-30"},
        )
    assert too_long.status_code == 422, too_long.text
    assert too_long.json()["error"]["details"][0]["parameter"] == "range"
    assert "20000" in too_long.json()["error"]["message"]
    assert too_wide.status_code == 422, too_wide.text
    assert too_wide.json()["error"]["details"][0]["parameter"] == "period"
    assert "150000" in too_wide.json()["error"]["message"]
    assert anomalies.status_code == 422, anomalies.text
    assert anomalies.json()["error"]["details"][0]["parameter"] == "range"


async def test_the_memory_cache_never_holds_more_than_its_byte_bound() -> None:
    cache = MemoryCache(max_entries=10_000, max_bytes=1_000_000)
    body = b"x" * 50_000
    for i in range(100):
        await cache.set(f"analytics:{i}", body, 60)
    assert cache.bytes <= 1_000_000
    assert 10 <= len(cache) <= 20
    # The newest entries stay; the oldest went first.
    assert await cache.get("analytics:99") == body
    assert await cache.get("analytics:0") is None
    # A body too large for the cache is not stored (and does not flush the rest).
    await cache.set("analytics:huge", b"y" * 600_000, 60)
    assert await cache.get("analytics:huge") is None
    assert await cache.get("analytics:99") == body


async def test_unknown_query_parameters_are_422_and_do_not_grow_the_cache(api: Api) -> None:
    cache = resources(api).cache
    assert isinstance(cache, MemoryCache)
    first = await api.get("/api/overview")
    assert first.status_code == 200
    entries = len(cache)
    refused = [await api.get("/api/overview", junk=str(i)) for i in range(20)]
    series = await api.get("/api/analytics/timeseries/nope", junk="1")
    assert {r.status_code for r in refused} == {422}
    assert refused[0].json()["error"]["details"][0]["parameter"] == "junk"
    assert series.status_code == 422
    assert len(cache) == entries


@pytest.mark.parametrize(
    ("start", "end", "parameter"),
    [
        ("0001-01-01", "0001-01-05", "start"),
        ("9999-12-25", "9999-12-31", "start"),
        ("2026-06-01", "9999-12-31", "end"),
    ],
)
async def test_dates_the_server_cannot_represent_are_422_on_every_range_route(
    api: Api, start: str, end: str, parameter: str
) -> None:
    metric = (await api.get_json("/api/metrics"))["metrics"][0]["id"]
    for path in ("/api/overview", "/api/campaigns", f"/api/analytics/timeseries/{metric}"):
        response = await api.get(path, start=start, end=end)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["error"]["details"][0]["parameter"] == parameter


async def test_failed_authentication_is_rate_limited_per_address_without_database_work(
    make_api: ApiFactory, synced_conninfo: str
) -> None:
    async with make_api(synced_conninfo, auth_failures_per_minute=20) as api:
        state = resources(api)
        before = api.db.stats.queries
        statuses = [
            (await api.http.get("/api/overview", headers={"X-API-Key": f"ka_wrong{i}"})).status_code
            for i in range(60)
        ]
        repeated = [
            (await api.http.get("/api/account", headers={"X-API-Key": "ka_same"})).status_code
            for _ in range(3)
        ]
        queries = api.db.stats.queries - before
    assert statuses[:20] == [401] * 20
    assert set(statuses[20:]) == {429}
    assert set(repeated) == {429}
    # One key lookup per failure allowed, none after the address ran out of tries.
    assert state.auth.lookups == 20
    assert queries <= 20


async def test_unknown_keys_are_remembered_so_a_repeat_costs_no_lookup(api: Api) -> None:
    state = resources(api)
    before = state.auth.lookups
    for _ in range(5):
        response = await api.http.get("/api/account", headers={"X-API-Key": "ka_unknown"})
        assert response.status_code == 401
    assert state.auth.lookups - before == 1


async def test_metrics_and_readiness_floods_cost_at_most_one_check_each(api: Api) -> None:
    await api.http.get("/metrics")
    await api.http.get("/health/ready")
    before = api.db.stats.queries
    for _ in range(20):
        assert (await api.http.get("/metrics")).status_code == 200
        assert (await api.http.get("/health/ready")).status_code == 200
    assert api.db.stats.queries - before == 0


async def test_metrics_can_require_an_api_key(make_api: ApiFactory, synced_conninfo: str) -> None:
    async with make_api(synced_conninfo, metrics_require_key=True) as api:
        anonymous = await api.http.get("/metrics")
        keyed = await api.http.get("/metrics", headers=api.reader)
    assert anonymous.status_code == 401
    assert keyed.status_code == 200 and "klaviyo" in keyed.text
