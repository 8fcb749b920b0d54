"""Syncs through the API, the Klaviyo fallback of an empty database, cache invalidation,
and the one date-range vocabulary."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest

from klaviyo_analytics.api.cache import MemoryCache
from klaviyo_analytics.api.deps import AppState
from tests.integration.api.conftest import Api, ApiFactory, fixed_clock


def resources(api: Api) -> AppState:
    state: AppState = api.app.state.resources
    return state


async def wait_for_syncs(api: Api) -> None:
    syncs = resources(api).syncs
    assert syncs is not None
    await asyncio.wait_for(syncs.wait(), 120)


async def test_a_sync_answers_202_with_its_run_id_and_a_second_one_is_refused(api: Api) -> None:
    started = await api.http.post("/api/sync/all", headers=api.admin)
    again = await api.http.post("/api/sync/metrics", headers=api.admin)
    assert started.status_code == 202, started.text
    runs = started.json()["runs"]
    assert runs and runs[0]["stream"] == "metrics"
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    live = await api.get_json("/api/sync/status")
    assert live["running"] is True
    await wait_for_syncs(api)
    run = await api.get_json(f"/api/sync/runs/{runs[0]['run_id']}")
    assert run["status"] == "succeeded" and run["stream"] == "metrics"
    status = await api.get_json("/api/sync/status")
    assert status["running"] is False
    assert {s["stream"] for s in status["streams"] if s["last_run"]} >= {"metrics", "events"}
    with psycopg.connect(api.db.conninfo) as conn:
        audit = conn.execute(
            "SELECT actor, details->>'stream' FROM audit_log WHERE action = 'sync.start'"
        ).fetchall()
    assert audit == [("test-admin", "all")]


async def test_live_progress_shows_records_pages_and_fraction_while_a_stream_runs(
    api: Api,
) -> None:
    syncs = resources(api).syncs
    assert syncs is not None
    started = await api.http.post("/api/sync/events", headers=api.admin)
    assert started.status_code == 202
    seen = []
    while syncs.running():
        status = await api.get_json("/api/sync/status")
        events = next(s for s in status["streams"] if s["stream"] == "events")
        if events["running"] is not None:
            seen.append(events["running"])
        await asyncio.sleep(0.005)
    assert seen, "the events run was never seen running"
    assert set(seen[0]) >= {"run_id", "records", "pages", "fraction", "rows"}
    assert seen[0]["run_id"] == started.json()["runs"][0]["run_id"]


async def test_run_history_pages_and_unknown_runs_are_404(api: Api) -> None:
    first = await api.get_json("/api/sync/runs", limit=2)
    second = await api.get_json("/api/sync/runs", limit=2, offset=2)
    assert first["total"] == second["total"] >= 9
    assert len(first["runs"]) == 2 and first["runs"][0]["id"] != second["runs"][0]["id"]
    events = await api.get_json("/api/sync/runs", stream="events")
    assert {r["stream"] for r in events["runs"]} == {"events"}
    missing = await api.get("/api/sync/runs/999999")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_an_empty_database_answers_from_klaviyo_then_from_the_database_after_the_sync(
    make_api: ApiFactory, db_conninfo: str
) -> None:
    async with make_api(db_conninfo) as api:
        metrics = await api.get("/api/metrics")
        assert metrics.status_code == 200, metrics.text
        assert metrics.json()["source"] == "klaviyo"
        assert metrics.headers["X-Data-Source"] == "klaviyo"
        remote = await api.get("/api/overview")
        assert remote.status_code == 200, remote.text
        assert remote.json()["source"] == "klaviyo"
        await wait_for_syncs(api)
        local = await api.get("/api/overview")
        local_metrics = await api.get("/api/metrics")
    assert local.json()["source"] == "database" and local.headers["X-Data-Source"] == "database"
    assert local_metrics.json()["source"] == "database"
    assert {m["id"] for m in local_metrics.json()["metrics"]} == {
        m["id"] for m in metrics.json()["metrics"]
    }
    # Orders and revenue are plain sums of Placed Order: both sources agree on them.
    for name in ("orders", "revenue"):
        assert Decimal(remote.json()[name]["current"]) == Decimal(local.json()[name]["current"])
    assert Decimal(local.json()["orders"]["current"]) > 0


async def test_without_a_klaviyo_key_an_empty_database_answers_zeros_and_syncs_are_503(
    make_api: ApiFactory, db_conninfo: str
) -> None:
    async with make_api(db_conninfo, klaviyo=False) as api:
        body = await api.get_json("/api/overview")
        refused = await api.http.post("/api/sync/all", headers=api.admin)
    assert body["source"] == "database" and Decimal(body["orders"]["current"]) == 0
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "not_configured"


async def test_a_sync_invalidates_the_cached_answers_it_touches(
    make_api: ApiFactory, synced_conninfo: str
) -> None:
    cache = MemoryCache()
    async with make_api(synced_conninfo, cache=cache) as api:
        assert (await api.get("/api/overview")).headers["X-Cache"] == "miss"
        assert (await api.get("/api/overview")).headers["X-Cache"] == "hit"
        assert (await api.get("/api/segments")).headers["X-Cache"] == "miss"
        started = await api.http.post("/api/sync/lists", headers=api.admin)
        assert started.status_code == 202
        await wait_for_syncs(api)
        # lists feed the overview (subscribers), not the segments table.
        assert (await api.get("/api/overview")).headers["X-Cache"] == "miss"
        assert (await api.get("/api/segments")).headers["X-Cache"] == "hit"


async def test_errors_are_never_cached(make_api: ApiFactory, synced_conninfo: str) -> None:
    cache = MemoryCache()
    async with make_api(synced_conninfo, cache=cache) as api:
        for _ in range(2):
            assert (await api.get("/api/campaigns", sort="nope")).status_code == 422
    assert len(cache) == 0


@pytest.mark.parametrize(
    ("now", "preset", "start", "end"),
    [
        # 03:00 UTC on New Year's Day is still New Year's Eve in New York.
        (datetime(2026, 1, 1, 3, tzinfo=UTC), "today", "2025-12-31", "2025-12-31"),
        (datetime(2026, 1, 1, 3, tzinfo=UTC), "this-month", "2025-12-01", "2025-12-31"),
        (datetime(2026, 1, 1, 3, tzinfo=UTC), "this-year", "2025-01-01", "2025-12-31"),
        (datetime(2026, 1, 1, 3, tzinfo=UTC), "last-month", "2025-11-01", "2025-11-30"),
        (datetime(2026, 1, 1, 6, tzinfo=UTC), "this-year", "2026-01-01", "2026-01-01"),
        (datetime(2026, 3, 1, 4, tzinfo=UTC), "last-month", "2026-01-01", "2026-01-31"),
        (datetime(2026, 3, 1, 5, tzinfo=UTC), "last-month", "2026-02-01", "2026-02-28"),
        (datetime(2026, 3, 1, 5, tzinfo=UTC), "yesterday", "2026-02-28", "2026-02-28"),
        (datetime(2026, 3, 1, 5, tzinfo=UTC), "last-7-days", "2026-02-23", "2026-03-01"),
    ],
)
async def test_presets_are_store_local_dates_at_month_and_year_boundaries(
    make_api: ApiFactory,
    synced_conninfo: str,
    now: datetime,
    preset: str,
    start: str,
    end: str,
) -> None:
    async with make_api(synced_conninfo, klaviyo=False, clock=fixed_clock(now)) as api:
        body = await api.get_json("/api/charts/distribution", range=preset)
    assert body["timezone"] == "America/New_York"
    assert body["range"] == {"start": start, "end": end}


async def test_account_timezone_setting_overrides_the_accounts_zone(
    make_api: ApiFactory, synced_conninfo: str
) -> None:
    now = datetime(2026, 1, 1, 3, tzinfo=UTC)
    async with make_api(
        synced_conninfo, klaviyo=False, clock=fixed_clock(now), account_timezone="UTC"
    ) as api:
        body = await api.get_json("/api/charts/distribution", range="this-month")
    assert body["timezone"] == "UTC"
    assert body["range"] == {"start": "2026-01-01", "end": "2026-01-01"}


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"range": "last-week"}, "range"),
        ({"range": "today", "start": "2026-06-01", "end": "2026-06-02"}, "range"),
        ({"start": "2026-06-01"}, "end"),
        ({"end": "2026-06-01"}, "start"),
        ({"start": "2026-13-01", "end": "2026-12-31"}, "start"),
        ({"start": "2026-06-01", "end": "June 2"}, "end"),
        ({"start": "2026-06-05", "end": "2026-06-01"}, "start"),
        ({"start": "1900-01-01", "end": "2026-06-01"}, "start"),
        ({"limit": "0"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"order": "sideways"}, "order"),
    ],
)
async def test_invalid_parameters_are_422_naming_the_parameter_and_the_reason(
    api: Api, params: dict[str, str], parameter: str
) -> None:
    response = await api.get("/api/campaigns", **params)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_parameter"
    assert error["details"][0]["parameter"] == parameter
    assert parameter in error["message"] and error["details"][0]["reason"]
