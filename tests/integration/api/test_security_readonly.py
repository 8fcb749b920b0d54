"""Reader keys change nothing and the server sends nothing away (issue 14, items 5, 6, 15-17):
bounded Klaviyo fallback, read-only forecast GETs, audited key changes with unique names, no
Host-built redirects and no CDN-loaded docs page.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import psycopg
import pytest

from klaviyo_analytics.api.auth import TokenBucket
from klaviyo_analytics.api.deps import FALLBACK_ANSWERS_PER_MINUTE, AppState
from tests.integration.api.conftest import Api, ApiFactory
from tests.integration.api.test_forecast_and_anomalies import synthetic  # noqa: F401 (fixture)


def resources(api: Api) -> AppState:
    state: AppState = api.app.state.resources
    return state


def count(conninfo: str, query: str) -> int:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


async def test_after_the_first_sync_gets_never_call_klaviyo_or_start_syncs(api: Api) -> None:
    state = resources(api)
    assert state.klaviyo is not None and state.syncs is not None
    runs = count(api.db.conninfo, "SELECT count(*) FROM sync_runs")
    calls = state.klaviyo.stats.api_calls
    before = await api.get_json("/api/overview", start="2010-01-01", end="2010-01-31")
    after = await api.get_json("/api/overview", start="2030-01-01", end="2030-01-31")
    inside = await api.get_json("/api/overview", start="2026-06-10", end="2026-06-30")
    await api.get_json("/api/metrics")
    await api.get_json("/api/account")
    assert state.syncs.running() == []
    assert count(api.db.conninfo, "SELECT count(*) FROM sync_runs") == runs
    assert state.klaviyo.stats.api_calls == calls
    assert before["source"] == after["source"] == "database"
    assert before["coverage"] == "before_history" and after["coverage"] == "after_history"
    assert Decimal(before["orders"]["current"]) == Decimal(after["orders"]["current"]) == 0
    assert inside["coverage"] == "data"


async def test_before_the_first_sync_gets_start_one_sync_per_stream_and_klaviyo_is_bounded(
    make_api: ApiFactory, db_conninfo: str
) -> None:
    async with make_api(db_conninfo) as api:
        state = resources(api)
        assert state.klaviyo is not None and state.syncs is not None
        # A stopped clock: the budget does not refill however slowly this machine runs.
        state.fallback_budget = TokenBucket(FALLBACK_ANSWERS_PER_MINUTE, clock=lambda: 0.0)
        metrics = [(await api.get_json("/api/metrics"))["source"] for _ in range(3)]
        sources = []
        for month in range(1, 13):
            body = await api.get_json(
                "/api/overview", start=f"2025-{month:02d}-01", end=f"2025-{month:02d}-28"
            )
            sources.append(body["source"])
        await asyncio.wait_for(state.syncs.wait(), 120)
        later = await api.get_json("/api/overview", start="2024-01-01", end="2024-01-31")
    streams = count(db_conninfo, "SELECT count(DISTINCT stream) FROM sync_runs")
    runs = count(db_conninfo, "SELECT count(*) FROM sync_runs")
    # The server's fallback budget (10 a minute) bounds the Klaviyo answers...
    assert metrics[0] == "klaviyo"
    assert sources[0] == "klaviyo"
    assert sources.count("klaviyo") + metrics.count("klaviyo") == FALLBACK_ANSWERS_PER_MINUTE
    assert sources[-1] == "database"
    # ...and GETs started one sync of each stream they read (events, metrics), not all streams.
    assert (streams, runs) == (2, 2)
    assert later["source"] == "database"


async def test_forecast_gets_write_nothing_and_read_the_stored_forecast(
    api: Api,
    synthetic: str,  # noqa: F811 (the fixture)
) -> None:
    rows = "SELECT count(*) FROM forecast_predictions"
    models = "SELECT count(*) FROM forecast_models"
    before = (count(api.db.conninfo, rows), count(api.db.conninfo, models))
    for horizon in range(5, 15):
        response = await api.get(
            f"/api/analytics/forecast/{synthetic}", horizon=horizon, model="seasonal_naive"
        )
        assert response.status_code == 200, response.text
        assert response.json()["stored"] is False and len(response.json()["points"]) == horizon
    assert (count(api.db.conninfo, rows), count(api.db.conninfo, models)) == before

    # A reader may not store one; an admin may, and GETs then answer the stored forecast.
    path = f"/api/analytics/forecast/{synthetic}"
    params = {"horizon": "20", "model": "seasonal_naive"}
    refused = await api.http.post(path, params=params, headers=api.reader)
    stored = await api.http.post(path, params=params, headers=api.admin)
    assert refused.status_code == 403
    assert stored.status_code == 200, stored.text
    read = await api.get_json(path, horizon=12, model="seasonal_naive")
    assert read["stored"] is True and read["model_id"] == stored.json()["model_id"]
    for got, want in zip(read["points"], stored.json()["points"][:12], strict=True):
        assert got["date"] == want["date"]
        assert got["upper"] == pytest.approx(want["upper"], rel=1e-9)
    assert count(api.db.conninfo, rows) == before[0] + 20


async def test_key_changes_through_the_api_record_the_acting_key_and_names_are_unique(
    api: Api,
) -> None:
    created = await api.http.post(
        "/api/keys", json={"name": "dashboard", "role": "reader"}, headers=api.admin
    )
    again = await api.http.post(
        "/api/keys", json={"name": "dashboard", "role": "reader"}, headers=api.admin
    )
    other_role = await api.http.post(
        "/api/keys", json={"name": "dashboard", "role": "admin"}, headers=api.admin
    )
    assert created.status_code == 201 and other_role.status_code == 201
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    key_id = created.json()["key"]["id"]
    revoked = await api.http.delete(f"/api/keys/{key_id}", headers=api.admin)
    reused = await api.http.post(
        "/api/keys", json={"name": "dashboard", "role": "reader"}, headers=api.admin
    )
    assert revoked.status_code == 200 and reused.status_code == 201
    with psycopg.connect(api.db.conninfo) as conn:
        admin_id = conn.execute("SELECT id FROM api_keys WHERE name = 'test-admin'").fetchone()
        actors = conn.execute(
            "SELECT DISTINCT key_id FROM audit_log WHERE action LIKE 'apikey.%%'"
            " AND actor = 'test-admin'"
        ).fetchall()
    assert admin_id is not None and actors == [(admin_id[0],)]


async def test_a_trailing_slash_is_not_redirected_to_the_host_the_client_named(api: Api) -> None:
    response = await api.http.get("/api/account/", headers={**api.reader, "Host": "evil.example"})
    assert response.status_code == 404
    assert "evil.example" not in response.headers.get("location", "")
    assert response.json()["error"]["code"] == "not_found"


async def test_the_docs_page_is_off_unless_enabled(
    make_api: ApiFactory, synced_conninfo: str
) -> None:
    async with make_api(synced_conninfo) as api:
        docs = await api.http.get("/docs")
        redoc = await api.http.get("/redoc")
        schema = await api.http.get("/openapi.json")
    assert docs.status_code == 404 and redoc.status_code == 404
    assert schema.status_code == 200
    async with make_api(synced_conninfo, api_docs_enabled=True) as api:
        enabled = await api.http.get("/docs")
    assert enabled.status_code == 200
