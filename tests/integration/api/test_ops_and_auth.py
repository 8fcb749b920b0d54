"""Operations endpoints, API keys, roles, rate limits and the error shape."""

from __future__ import annotations

import hashlib

import psycopg
from prometheus_client.parser import text_string_to_metric_families

from klaviyo_analytics.api.cache import MemoryCache
from tests.integration.api.conftest import Api, ApiFactory


async def test_health_answers_without_a_key_or_the_database(api: Api) -> None:
    response = await api.http.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readiness_reports_every_check_and_is_ready_on_a_live_database(api: Api) -> None:
    response = await api.http.get("/health/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    checks = {c["name"]: c for c in body["checks"]}
    assert body["ready"] is True
    assert set(checks) == {"database", "disk", "replication", "sync", "backup"}
    assert checks["database"]["status"] == "ok" and checks["database"]["required"]
    assert checks["disk"]["status"] == "ok"
    assert checks["backup"]["status"] == "warn"  # no backup in the test's folder
    assert "ago" in checks["sync"]["detail"]


async def test_readiness_is_503_when_the_disk_check_fails(
    make_api: ApiFactory, synced_conninfo: str
) -> None:
    async with make_api(synced_conninfo, min_free_disk_mb=10**12) as api:
        response = await api.http.get("/health/ready")
    assert response.status_code == 503
    disk = next(c for c in response.json()["checks"] if c["name"] == "disk")
    assert disk["status"] == "fail" and "needed" in disk["detail"]


async def test_metrics_parse_as_prometheus_text_with_pool_http_sync_and_size_figures(
    api: Api,
) -> None:
    await api.get("/api/metrics")
    await api.get("/api/sync/runs")
    response = await api.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    for name in (
        "klaviyo_analytics_db_pool_size",
        "klaviyo_analytics_http_requests",
        "klaviyo_analytics_http_request_duration_seconds",
        "klaviyo_analytics_db_query_duration_seconds",
        "klaviyo_analytics_db_slow_queries",
        "klaviyo_analytics_sync_runs",
        "klaviyo_analytics_sync_records",
        "klaviyo_analytics_sync_rate_limited",
        "klaviyo_analytics_relation_size_bytes",
        "klaviyo_analytics_backup_failures",
    ):
        assert name in families, name
    routes = {
        (s.labels["route"], s.labels["status"])
        for s in families["klaviyo_analytics_http_requests"].samples
        if s.name.endswith("_total")
    }
    assert ("/api/metrics", "200") in routes and ("/api/sync/runs", "200") in routes
    runs = {
        (s.labels["stream"], s.labels["status"]): s.value
        for s in families["klaviyo_analytics_sync_runs"].samples
    }
    assert runs[("events", "succeeded")] >= 1
    sizes = {
        s.labels["relation"] for s in families["klaviyo_analytics_relation_size_bytes"].samples
    }
    assert "klaviyo_events" in sizes or any(n.startswith("klaviyo_events") for n in sizes)


async def test_two_apps_keep_separate_metric_registries(
    make_api: ApiFactory, synced_conninfo: str
) -> None:
    async with make_api(synced_conninfo) as first, make_api(synced_conninfo) as second:
        await first.get("/api/metrics")
        first_text = (await first.http.get("/metrics")).text
        second_text = (await second.http.get("/metrics")).text
    assert 'route="/api/metrics"' in first_text
    assert "klaviyo_analytics_http_requests" in second_text
    assert 'route="/api/metrics"' not in second_text


async def test_no_key_is_401_and_an_unknown_key_is_401_in_the_error_shape(api: Api) -> None:
    missing = await api.http.get("/api/metrics")
    wrong = await api.http.get("/api/metrics", headers={"X-API-Key": "ka_nope"})
    for response in (missing, wrong):
        assert response.status_code == 401
        assert set(response.json()["error"]) == {"code", "message", "details"}
        assert response.json()["error"]["code"] == "unauthenticated"


async def test_a_reader_key_is_refused_on_admin_routes_with_403(api: Api) -> None:
    for path in ("/api/sync/metrics", "/api/sync/all", "/api/cache/clear"):
        response = await api.http.post(path, headers=api.reader)
        assert response.status_code == 403, path
        assert response.json()["error"]["code"] == "forbidden"


async def test_keys_are_stored_hashed_and_revoked_keys_stop_working(api: Api) -> None:
    with psycopg.connect(api.db.conninfo) as conn:
        hashes = [r[0] for r in conn.execute("SELECT token_hash FROM api_keys").fetchall()]
    assert api.reader_key not in hashes and all(len(h) == 64 for h in hashes)
    assert hashlib.sha256(api.reader_key.encode()).hexdigest() in hashes
    created = await api.http.post(
        "/api/keys", json={"name": "temp", "role": "reader"}, headers=api.admin
    )
    assert created.status_code == 201
    token, key_id = created.json()["token"], created.json()["key"]["id"]
    assert (await api.http.get("/api/metrics", headers={"X-API-Key": token})).status_code == 200
    revoked = await api.http.delete(f"/api/keys/{key_id}", headers=api.admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert (await api.http.get("/api/metrics", headers={"X-API-Key": token})).status_code == 401
    listed = await api.http.get("/api/keys", headers=api.admin)
    assert token not in listed.text
    with psycopg.connect(api.db.conninfo) as conn:
        actions = [r[0] for r in conn.execute("SELECT action FROM audit_log ORDER BY id")]
    assert actions[-2:] == ["apikey.create", "apikey.revoke"]


async def test_a_key_over_its_rate_limit_gets_429_with_retry_after(
    make_api: ApiFactory, synced_conninfo: str
) -> None:
    async with make_api(synced_conninfo, api_rate_limit_per_minute=3) as api:
        codes = [(await api.get("/api/sync/runs")).status_code for _ in range(4)]
        limited = await api.get("/api/sync/runs")
        other_key = await api.http.get("/api/sync/runs", headers=api.admin)
    assert codes == [200, 200, 200, 429]
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["error"]["code"] == "rate_limited"
    assert other_key.status_code == 200


async def test_unknown_paths_and_methods_answer_in_the_error_shape(api: Api) -> None:
    missing = await api.http.get("/api/nope", headers=api.reader)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong_method = await api.http.delete("/api/metrics", headers=api.reader)
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"


async def test_cache_clear_is_audited_and_empties_the_cache(
    make_api: ApiFactory, synced_conninfo: str
) -> None:
    cache = MemoryCache()
    async with make_api(synced_conninfo, cache=cache) as api:
        first = await api.get("/api/metrics")
        second = await api.get("/api/metrics")
        assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("miss", "hit")
        assert len(cache) == 1
        cleared = await api.http.post("/api/cache/clear", headers=api.admin)
        assert cleared.status_code == 200 and cleared.json() == {"cleared": 1, "backend": "memory"}
        assert (await api.get("/api/metrics")).headers["X-Cache"] == "miss"
    with psycopg.connect(synced_conninfo) as conn:
        row = conn.execute(
            "SELECT actor, action, details FROM audit_log WHERE action = 'cache.clear'"
        ).fetchone()
    assert row == ("test-admin", "cache.clear", {"cleared": 1, "backend": "memory"})
