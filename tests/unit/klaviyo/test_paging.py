"""Paging: links.next is followed to the end, never in circles, never off the API's origin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from klaviyo_analytics.klaviyo import KlaviyoClient, KlaviyoPagingError
from tests.unit.klaviyo.helpers import BASE, Recorder, event, jsonapi, make_client, page_body

P2 = f"{BASE}/api/events?page%5Bcursor%5D=c2&page%5Bsize%5D=1000"
P3 = f"{BASE}/api/events?page%5Bcursor%5D=c3&page%5Bsize%5D=1000"


async def test_iter_events_follows_links_next_until_null() -> None:
    recorder = Recorder(
        jsonapi(page_body([event("e1"), event("e2")], next_url=P2)),
        jsonapi(page_body([event("e3")], next_url=P3)),
        jsonapi(page_body([event("e4")], next_url=None)),
    )
    async with make_client(recorder) as client:
        pages = [page async for page in client.iter_events()]
    assert [[r.id for r in p.records] for p in pages] == [["e1", "e2"], ["e3"], ["e4"]]
    assert [str(r.url) for r in recorder.requests[1:]] == [P2, P3]
    assert pages[0].next_url == P2 and pages[-1].next_url is None
    assert pages[1].url == P2
    assert pages[0].raw["data"][0]["id"] == "e1"


async def test_pages_fetched_without_their_body_carry_the_same_records_and_no_body() -> None:
    # The event backfill holds a page per window in flight; without its body a page of 1,000
    # events is ~2.2 MB of Python objects instead of ~6 MB.
    bodies = (page_body([event("e1"), event("e2")], next_url=P2), page_body([event("e3")]))
    async with make_client(Recorder(*map(jsonapi, bodies))) as client:
        kept = [p async for p in client.iter_events()]
    async with make_client(Recorder(*map(jsonapi, bodies))) as client:
        lean = [p async for p in client.iter_events(keep_raw=False)]
    assert [p.records for p in lean] == [p.records for p in kept]
    assert [(p.url, p.next_url) for p in lean] == [(p.url, p.next_url) for p in kept]
    assert [p.raw for p in lean] == [None, None]
    assert all(p.raw is not None for p in kept)


async def test_repeated_next_url_raises_instead_of_looping() -> None:
    recorder = Recorder(
        jsonapi(page_body([event("e1")], next_url=P2)),
        jsonapi(page_body([event("e2")], next_url=P2)),
    )
    async with make_client(recorder) as client:
        seen: list[str] = []
        with pytest.raises(KlaviyoPagingError, match="already followed"):
            async for page in client.iter_events():
                seen.extend(r.id for r in page.records)
    assert seen == ["e1", "e2"]
    assert len(recorder.requests) == 2


async def test_repeated_cursor_in_a_different_url_raises() -> None:
    same_cursor = f"{BASE}/api/events?page%5Bsize%5D=1000&page%5Bcursor%5D=c2&x=1"
    recorder = Recorder(
        jsonapi(page_body([event("e1")], next_url=P2)),
        jsonapi(page_body([event("e2")], next_url=same_cursor)),
    )
    async with make_client(recorder) as client:
        with pytest.raises(KlaviyoPagingError):
            async for _ in client.iter_events():
                pass
    assert len(recorder.requests) == 2


async def test_next_link_to_another_host_is_refused_so_the_key_stays_home() -> None:
    recorder = Recorder(
        jsonapi(page_body([event("e1")], next_url="https://evil.example/api/events?c=1"))
    )
    async with make_client(recorder) as client:
        with pytest.raises(KlaviyoPagingError, match="away from the API origin"):
            async for _ in client.iter_events():
                pass
    assert len(recorder.requests) == 1


async def test_events_window_is_inclusive_since_exclusive_until_sorted_with_includes() -> None:
    recorder = Recorder(jsonapi(page_body([])))
    since = datetime(2024, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=1)))
    until = datetime(2024, 1, 2, tzinfo=UTC)
    async with make_client(recorder) as client:
        async for _ in client.iter_events(since=since, until=until, metric_id="UMTLbD"):
            pass
    params = recorder.requests[0].url.params
    assert recorder.requests[0].url.path == "/api/events"
    assert params["filter"] == (
        "and(greater-or-equal(datetime,2024-01-01T00:00:00+00:00),"
        'less-than(datetime,2024-01-02T00:00:00+00:00),equals(metric_id,"UMTLbD"))'
    )
    assert params["sort"] == "datetime"
    assert params["page[size]"] == "1000"
    assert params["include"] == "metric,profile,attributions"


async def test_events_without_bounds_send_no_filter() -> None:
    recorder = Recorder(jsonapi(page_body([])))
    async with make_client(recorder) as client:
        async for _ in client.iter_events(include=()):
            pass
    params = recorder.requests[0].url.params
    assert "filter" not in params and "include" not in params


async def test_iter_events_resumes_from_a_start_url() -> None:
    recorder = Recorder(jsonapi(page_body([event("e9")])))
    async with make_client(recorder) as client:
        pages = [p async for p in client.iter_events(start_url=P3)]
    assert str(recorder.requests[0].url) == P3
    assert [r.id for r in pages[0].records] == ["e9"]


async def test_naive_datetimes_and_odd_metric_ids_are_refused_before_any_request() -> None:
    recorder = Recorder(jsonapi(page_body([])))
    async with make_client(recorder) as client:
        with pytest.raises(ValueError, match="no timezone"):
            client.iter_events(since=datetime(2024, 1, 1))
        with pytest.raises(ValueError, match="not a Klaviyo id"):
            client.iter_events(metric_id='x"),equals(profile_id,"y')
    assert recorder.requests == []


@pytest.mark.parametrize(
    ("method", "args", "path", "size"),
    [
        ("iter_profiles", (), "/api/profiles", "100"),
        ("iter_campaigns", ("email",), "/api/campaigns", "100"),
        ("iter_campaign_messages", ("C1",), "/api/campaigns/C1/campaign-messages", None),
        ("iter_flows", (), "/api/flows", "50"),
        ("iter_flow_actions", ("F1",), "/api/flows/F1/flow-actions", "50"),
        ("iter_flow_messages", ("A1",), "/api/flow-actions/A1/flow-messages", "50"),
        ("iter_lists", (), "/api/lists", "10"),
        ("iter_segments", (), "/api/segments", "10"),
        ("iter_forms", (), "/api/forms", "100"),
        ("iter_templates", (), "/api/templates", "10"),
        ("iter_metrics", (), "/api/metrics", None),
    ],
)
async def test_each_collection_asks_for_its_largest_page(
    method: str, args: tuple[str, ...], path: str, size: str | None
) -> None:
    recorder = Recorder(jsonapi(page_body([])))
    async with make_client(recorder) as client:
        async for _ in getattr(client, method)(*args):
            pass
    url = recorder.requests[0].url
    assert url.path == path
    assert url.params.get("page[size]") == size


async def test_campaigns_are_listed_per_channel_with_messages_included() -> None:
    recorder = Recorder(jsonapi(page_body([])))
    async with make_client(recorder) as client:
        async for _ in client.iter_campaigns("sms"):
            pass
    params = recorder.requests[0].url.params
    assert params["filter"] == "equals(messages.channel,'sms')"
    assert params["include"] == "campaign-messages"


async def test_campaigns_cannot_be_listed_without_a_channel() -> None:
    transport = httpx.MockTransport(lambda r: jsonapi({}))
    async with KlaviyoClient(api_key="pk_x", transport=transport) as client:
        with pytest.raises(ValueError, match="channel"):
            client.iter_campaigns("")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            client.iter_campaigns()  # type: ignore[call-arg]


async def test_profiles_updated_after_filters_with_greater_than() -> None:
    recorder = Recorder(jsonapi(page_body([])))
    async with make_client(recorder) as client:
        async for _ in client.iter_profiles(updated_after=datetime(2024, 5, 1, tzinfo=UTC)):
            pass
    assert recorder.requests[0].url.params["filter"] == (
        "greater-than(updated,2024-05-01T00:00:00+00:00)"
    )
