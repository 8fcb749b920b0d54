"""Moving the store's clock exposes exactly the events that happened meanwhile."""

from __future__ import annotations

import httpx

from klaviyo_analytics.sandbox.catalog import DAY
from klaviyo_analytics.sandbox.render import iso
from tests.fixtures.sandbox import SandboxFactory
from tests.integration.sandbox.conftest import client_for


def _all_ids(client: httpx.Client, flt: str | None = None) -> list[str]:
    ids: list[str] = []
    url: str | None = "/api/events"
    params = {"page[size]": "1000", **({"filter": flt} if flt else {})}
    while url:
        body = client.get(url, params=params if url == "/api/events" else None).json()
        ids += [e["id"] for e in body["data"]]
        url = body["links"].get("next")
    return ids


def test_advancing_the_clock_exposes_exactly_the_new_events(make_sandbox: SandboxFactory) -> None:
    server = make_sandbox()
    gen = server.generator
    before_now = gen.end_ts
    with client_for(server) as client:
        before = _all_ids(client)
        assert len(before) == gen.count_events(until=before_now + 1)
        moved = httpx.post(f"{server.base_url}/admin/clock", json={"advance_seconds": DAY})
        after_now = moved.json()["now_ts"]
        assert after_now == before_now + DAY
        new = _all_ids(client, f"greater-than(datetime,{iso(before_now)})")
        after = _all_ids(client)
    expected_new = gen.count_events(before_now + 1, after_now + 1)
    assert expected_new > 0
    assert len(new) == expected_new
    assert after == before + new
    stats = httpx.get(f"{server.base_url}/admin/stats").json()
    assert stats["events"] == len(after) and stats["now_ts"] == after_now


def test_live_clock_follows_wall_time(make_sandbox: SandboxFactory) -> None:
    server = make_sandbox(live=True)
    first = server.state.clock.now_ts()
    server.state.clock._started -= 120  # pretend two minutes passed
    assert server.state.clock.now_ts() >= first + 120


def test_clock_never_moves_back(make_sandbox: SandboxFactory) -> None:
    server = make_sandbox()
    response = httpx.post(f"{server.base_url}/admin/clock", json={"advance_seconds": -5})
    assert response.status_code == 400
