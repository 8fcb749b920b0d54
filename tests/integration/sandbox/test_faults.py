"""Each fault knob is visible to a raw HTTP client, and off by default."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from klaviyo_analytics.sandbox.config import FaultOptions
from tests.fixtures.sandbox import SandboxFactory
from tests.integration.sandbox.conftest import client_for


def _statuses(client: httpx.Client, n: int) -> list[int]:
    return [client.get("/api/metrics").status_code for _ in range(n)]


def test_no_faults_by_default(make_sandbox: SandboxFactory) -> None:
    with client_for(make_sandbox()) as client:
        assert set(_statuses(client, 30)) == {200}


@pytest.mark.parametrize(("knob", "status"), [("p429", 429), ("p500", 500), ("p503", 503)])
def test_error_rates_follow_the_knob(make_sandbox: SandboxFactory, knob: str, status: int) -> None:
    server = make_sandbox(faults=FaultOptions(seed=42, **{knob: 0.3}))
    with client_for(server) as client:
        statuses = _statuses(client, 200)
    share = statuses.count(status) / len(statuses)
    assert 0.2 <= share <= 0.4, share
    assert set(statuses) == {200, status}


def test_seeded_faults_repeat_exactly(make_sandbox: SandboxFactory) -> None:
    faults = FaultOptions(seed=9, p500=0.2, p503=0.2)
    with client_for(make_sandbox(faults=faults)) as a, client_for(make_sandbox(faults=faults)) as b:
        assert _statuses(a, 60) == _statuses(b, 60)


def test_injected_429_carries_retry_after(make_sandbox: SandboxFactory) -> None:
    with client_for(make_sandbox(faults=FaultOptions(p429=1.0))) as client:
        response = client.get("/api/events")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert response.json()["errors"][0]["code"] == "throttled"


def test_latency_is_added(make_sandbox: SandboxFactory) -> None:
    with client_for(make_sandbox(faults=FaultOptions(latency_ms=150))) as client:
        client.get("/api/metrics")
        started = time.perf_counter()
        client.get("/api/metrics")
        assert time.perf_counter() - started >= 0.15


def test_timeout_outlasts_the_client(make_sandbox: SandboxFactory) -> None:
    server = make_sandbox(faults=FaultOptions(p_timeout=1.0, timeout_s=5))
    with client_for(server, timeout=0.3) as client, pytest.raises(httpx.ReadTimeout):
        client.get("/api/metrics")


@pytest.mark.parametrize("knob", ["p_malformed", "p_truncated"])
def test_corrupt_bodies_are_not_json(make_sandbox: SandboxFactory, knob: str) -> None:
    with client_for(make_sandbox(faults=FaultOptions(**{knob: 1.0}))) as client:
        response = client.get("/api/events")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


def test_reset_drops_the_connection(make_sandbox: SandboxFactory) -> None:
    server = make_sandbox(faults=FaultOptions(p_reset=1.0))
    with client_for(server) as client, pytest.raises(httpx.TransportError) as raised:
        client.get("/api/metrics")
    assert isinstance(raised.value, httpx.ReadError | httpx.RemoteProtocolError)
    # The server survives: the next connection is served once the knob is off.
    httpx.post(f"{server.base_url}/admin/faults", json={"reset": True}).raise_for_status()
    with client_for(server) as client:
        assert client.get("/api/metrics").status_code == 200


def test_admin_endpoint_turns_faults_on_and_off(make_sandbox: SandboxFactory) -> None:
    server = make_sandbox()
    admin = f"{server.base_url}/admin/faults"
    assert httpx.post(admin, json={"p500": 1.0, "seed": 1}).json()["p500"] == 1.0
    with client_for(server) as client:
        assert _statuses(client, 3) == [500, 500, 500]
        assert httpx.post(admin, json={"p500": 2.0}).status_code == 400
        httpx.post(admin, json={"reset": True}).raise_for_status()
        assert _statuses(client, 3) == [200, 200, 200]
    assert httpx.get(admin).json()["injected"]["500"] == 3


def test_faults_spare_the_admin_endpoints(make_sandbox: SandboxFactory) -> None:
    server = make_sandbox(faults=FaultOptions(p500=1.0))
    assert httpx.get(f"{server.base_url}/admin/stats").status_code == 200
