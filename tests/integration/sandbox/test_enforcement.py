"""The sandbox refuses what Klaviyo refuses, with Klaviyo's statuses and error bodies."""

from __future__ import annotations

import time

import httpx

from klaviyo_analytics.sandbox.server import SandboxServer
from tests.fixtures.sandbox import SandboxFactory
from tests.integration.sandbox.conftest import REVISION, SchemaCheck, client_for


def _error(response: httpx.Response) -> dict[str, object]:
    error: dict[str, object] = response.json()["errors"][0]
    assert {"id", "status", "code", "title", "detail", "source"} <= set(error)
    return error


def test_request_without_key_is_401(sandbox: SandboxServer) -> None:
    response = httpx.get(f"{sandbox.base_url}/api/metrics", headers={"revision": REVISION})
    assert response.status_code == 401
    assert _error(response)["code"] == "not_authenticated"


def test_request_with_wrong_key_is_401(sandbox: SandboxServer) -> None:
    headers = {"revision": REVISION, "Authorization": "Klaviyo-API-Key pk_wrong"}
    response = httpx.get(f"{sandbox.base_url}/api/metrics", headers=headers)
    assert response.status_code == 401
    assert _error(response)["code"] == "authentication_failed"


def test_request_without_revision_is_400(sandbox: SandboxServer) -> None:
    headers = {"Authorization": f"Klaviyo-API-Key {sandbox.api_key}"}
    response = httpx.get(f"{sandbox.base_url}/api/metrics", headers=headers)
    assert response.status_code == 400
    assert _error(response)["source"] == {"parameter": "revision"}


def test_page_size_above_maximum_is_400(api: httpx.Client, check_response: SchemaCheck) -> None:
    for path, maximum in (("/api/events", 1000), ("/api/profiles", 100), ("/api/lists", 10)):
        response = api.get(path, params={"page[size]": str(maximum + 1)})
        assert response.status_code == 400, path
        assert _error(response)["source"] == {"parameter": "page[size]"}
        assert api.get(path, params={"page[size]": str(maximum)}).status_code == 200
    check_response("get", "/api/events", 400, response.json())


def test_campaigns_without_channel_filter_is_400(api: httpx.Client) -> None:
    response = api.get("/api/campaigns")
    assert response.status_code == 400
    assert _error(response)["source"] == {"parameter": "filter"}


def test_bad_filters_are_400_with_jsonapi_errors(api: httpx.Client) -> None:
    for bad in (
        "equals(metric_id,",  # syntax
        "equals(color,'red')",  # unknown field
        "contains(metric_id,'x')",  # operator not allowed on the field
        "greater-than(datetime,yesterday)",  # not a datetime
        "or(equals(metric_id,'a'),equals(metric_id,'b'))",  # unsupported combinator
    ):
        response = api.get("/api/events", params={"filter": bad})
        assert response.status_code == 400, bad
        error = _error(response)
        assert error["status"] == 400 and error["source"] == {"parameter": "filter"}, bad


def test_unknown_campaign_is_404(api: httpx.Client) -> None:
    response = api.get("/api/campaigns/NOPE/campaign-messages")
    assert response.status_code == 404
    assert _error(response)["code"] == "not_found"


def test_burst_limit_gives_429_with_retry_after(make_sandbox: SandboxFactory) -> None:
    server = make_sandbox(rate_limits=True)
    with client_for(server) as client:
        statuses = [client.get("/api/flows") for _ in range(4)]  # get_flows: 3/s burst
    assert [r.status_code for r in statuses[:3]] == [200, 200, 200]
    limited = statuses[3]
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["RateLimit-Remaining"] == "0"
    assert _error(limited)["code"] == "throttled"
    assert statuses[0].headers["RateLimit-Limit"] == "60"


def test_rate_limit_scale_raises_the_limits(make_sandbox: SandboxFactory) -> None:
    server = make_sandbox(rate_limits=True, rate_limit_scale=2.0)
    with client_for(server) as client:
        statuses = [client.get("/api/flows").status_code for _ in range(7)]
    assert statuses == [200] * 6 + [429]


def test_profiles_with_predictive_analytics_have_their_own_lower_limits(
    make_sandbox: SandboxFactory,
) -> None:
    # get_profiles: 75/s burst; with additional-fields[profile]=predictive_analytics 10/s.
    server = make_sandbox(rate_limits=True)
    predictive = {"additional-fields[profile]": "predictive_analytics", "page[size]": "1"}
    with client_for(server) as client:
        assert client.get("/api/profiles", params=predictive).status_code == 200  # warm facts
        time.sleep(1.1)  # out of the burst window
        asked = [client.get("/api/profiles", params=predictive) for _ in range(11)]
        plain = [client.get("/api/profiles", params={"page[size]": "1"}) for _ in range(11)]
    assert [r.status_code for r in asked[:10]] == [200] * 10
    assert asked[10].status_code == 429 and int(asked[10].headers["Retry-After"]) >= 1
    assert asked[10].headers["RateLimit-Limit"] in ("10", "150")
    # The plain listing is counted apart and keeps its own, higher burst.
    assert [r.status_code for r in plain] == [200] * 11
