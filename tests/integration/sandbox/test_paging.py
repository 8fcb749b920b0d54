"""Events page through links.next exactly, stably and deterministically."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx

from klaviyo_analytics.sandbox.catalog import DAY
from klaviyo_analytics.sandbox.config import StoreOptions
from klaviyo_analytics.sandbox.generator import StoreGenerator
from klaviyo_analytics.sandbox.render import iso
from tests.fixtures.sandbox import SandboxFactory
from tests.integration.sandbox.conftest import client_for

BIG = StoreOptions(seed=5, profiles=2_500, days=30, campaigns=8, flows=5)


def _walk(client: httpx.Client, url: str, **params: str) -> tuple[list[str], list[bytes]]:
    ids: list[str] = []
    pages: list[bytes] = []
    next_url: str | None = url
    while next_url:
        response = client.get(next_url, params=params if next_url == url else None)
        assert response.status_code == 200, response.text
        pages.append(response.content)
        body = response.json()
        ids += [e["id"] for e in body["data"]]
        next_url = body["links"].get("next")
    return ids, pages


def test_paging_all_events_returns_exactly_count_events(make_sandbox: SandboxFactory) -> None:
    server = make_sandbox(store=BIG)
    expected = server.generator.count_events()
    assert expected >= 10_000
    with client_for(server) as client:
        ids, _ = _walk(client, "/api/events?page[size]=1000")
    assert len(ids) == expected
    assert len(set(ids)) == expected


def test_next_link_is_absolute_and_keeps_filters(make_sandbox: SandboxFactory) -> None:
    server = make_sandbox(store=BIG)
    metric = server.generator.catalog.metrics[0]
    flt = f'equals(metric_id,"{metric.id}")'
    with client_for(server) as client:
        body = client.get("/api/events", params={"filter": flt, "page[size]": "100",
                                                 "sort": "-datetime"}).json()  # fmt: skip
    link = body["links"]["next"]
    assert link.startswith(server.base_url + "/api/events?")
    query = parse_qs(urlsplit(link).query)
    assert query["filter"] == [flt] and query["page[size]"] == ["100"]
    assert query["sort"] == ["-datetime"] and query["page[cursor]"]


def test_same_second_window_boundaries_lose_nothing(make_sandbox: SandboxFactory) -> None:
    server = make_sandbox(store=BIG)
    gen: StoreGenerator = server.generator
    campaign = gen.catalog.campaigns[0]
    # A window ending inside a send burst (many events share each of these seconds).
    edge = campaign.send_ts + 3
    windows = [(gen.start_ts, edge), (edge, campaign.send_ts + DAY)]
    total = 0
    with client_for(server) as client:
        for lo, hi in windows:
            flt = f"and(greater-or-equal(datetime,{iso(lo)}),less-than(datetime,{iso(hi)}))"
            ids, _ = _walk(client, "/api/events", filter=flt, **{"page[size]": "37"})
            assert len(ids) == len(set(ids)) == gen.count_events(lo, hi)
            total += len(ids)
    assert total == gen.count_events(gen.start_ts, campaign.send_ts + DAY)


def test_descending_sort_reverses_ascending(make_sandbox: SandboxFactory) -> None:
    server = make_sandbox()
    gen = server.generator
    lo, hi = gen.start_ts + 3 * DAY, gen.start_ts + 5 * DAY
    flt = f"and(greater-or-equal(datetime,{iso(lo)}),less-than(datetime,{iso(hi)}))"
    with client_for(server) as client:
        up, _ = _walk(client, "/api/events", filter=flt, **{"page[size]": "500"})
        down, _ = _walk(
            client, "/api/events", filter=flt, sort="-datetime", **{"page[size]": "300"}
        )
    assert down == up[::-1] and len(up) == gen.count_events(lo, hi)


def test_same_seed_serves_byte_identical_pages(make_sandbox: SandboxFactory) -> None:
    a, b = make_sandbox(), make_sandbox()
    with client_for(a) as ca, client_for(b) as cb:
        _, pages_a = _walk(ca, "/api/events?page[size]=1000&include=profile,metric,attributions")
        _, pages_b = _walk(cb, "/api/events?page[size]=1000&include=profile,metric,attributions")
        _, again = _walk(ca, "/api/events?page[size]=1000&include=profile,metric,attributions")
    # Only the servers' own URLs differ; a bare port number could also occur inside a timestamp.
    origin = lambda s: s.base_url.encode()  # noqa: E731
    assert len(pages_a) > 1
    assert [p.replace(origin(a), b"ORIGIN") for p in pages_a] == [
        p.replace(origin(b), b"ORIGIN") for p in pages_b
    ]
    assert again == pages_a  # a cursor is stable: the same request, the same bytes


def test_different_seeds_serve_different_pages(make_sandbox: SandboxFactory) -> None:
    a = make_sandbox()
    b = make_sandbox(store=StoreOptions(seed=8, profiles=600, days=21, campaigns=6, flows=5))
    with client_for(a) as ca, client_for(b) as cb:
        first_a = ca.get("/api/events?page[size]=100").json()["data"]
        first_b = cb.get("/api/events?page[size]=100").json()["data"]
    assert first_a != first_b


def test_profiles_page_through_all_and_filter_by_updated(make_sandbox: SandboxFactory) -> None:
    server = make_sandbox()
    gen = server.generator
    with client_for(server) as client:
        ids, _ = _walk(client, "/api/profiles?page[size]=100")
        since = gen.end_ts - 7 * DAY
        recent, _ = _walk(
            client,
            "/api/profiles",
            filter=f"greater-than(updated,{iso(since)})",
            **{"page[size]": "100"},
        )
    assert len(ids) == len(set(ids)) == gen.options.profiles
    assert len(recent) == int((gen.catalog.profile_updated > since).sum()) > 0
