"""Reports and aggregates: POSTed JSON:API bodies as the spec describes, results validated."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from klaviyo_analytics.klaviyo import KlaviyoInvalidPayloadError, Timeframe
from tests.unit.klaviyo.helpers import BASE, Recorder, jsonapi, make_client

RESULTS = [
    {"groupings": {"campaign_id": "C1", "send_channel": "email"}, "statistics": {"opens": 10}}
]


def report(kind: str, results: list[Any], next_url: str | None = None, **extra: Any) -> Any:
    links: dict[str, Any] = {"self": f"{BASE}/api/x"}
    if next_url:
        links["next"] = next_url
    return jsonapi(
        {"data": {"type": kind, "attributes": {"results": results, **extra}}, "links": links}
    )


def sent_body(recorder: Recorder, index: int = 0) -> dict[str, Any]:
    request = recorder.requests[index]
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/vnd.api+json"
    body: dict[str, Any] = json.loads(request.content)
    return body


async def test_campaign_values_posts_a_jsonapi_query_and_reads_the_results() -> None:
    recorder = Recorder(report("campaign-values-report", RESULTS))
    async with make_client(recorder) as client:
        result = await client.query_campaign_values(
            statistics=["opens", "conversion_value"],
            timeframe=Timeframe(key="last_30_days"),
            conversion_metric_id="M1",
            group_by=["campaign_id", "send_channel"],
        )
    assert recorder.requests[0].url.path == "/api/campaign-values-reports"
    assert sent_body(recorder) == {
        "data": {
            "type": "campaign-values-report",
            "attributes": {
                "statistics": ["opens", "conversion_value"],
                "timeframe": {"key": "last_30_days"},
                "conversion_metric_id": "M1",
                "group_by": ["campaign_id", "send_channel"],
            },
        }
    }
    assert result.results[0].groupings["campaign_id"] == "C1"
    assert result.results[0].statistics == {"opens": 10}


async def test_report_pages_are_followed_and_merged() -> None:
    second = [{"groupings": {"flow_id": "F2"}, "statistics": {"opens": 1}}]
    recorder = Recorder(
        report(
            "flow-values-report", RESULTS, next_url=f"{BASE}/api/flow-values-reports?page_cursor=a"
        ),
        report("flow-values-report", second),
    )
    async with make_client(recorder) as client:
        result = await client.query_flow_values(
            statistics=["opens"],
            timeframe=Timeframe(
                start=datetime(2024, 1, 1, tzinfo=UTC), end=datetime(2024, 2, 1, tzinfo=UTC)
            ),
            conversion_metric_id="M1",
        )
    assert len(result.results) == 2
    assert recorder.requests[1].url.params["page_cursor"] == "a"
    assert sent_body(recorder, 1) == sent_body(recorder, 0)
    assert sent_body(recorder)["data"]["attributes"]["timeframe"] == {
        "start": "2024-01-01T00:00:00+00:00",
        "end": "2024-02-01T00:00:00+00:00",
    }


async def test_flow_series_sends_its_interval_and_reads_date_times() -> None:
    recorder = Recorder(
        report("flow-series-report", RESULTS, date_times=["2024-01-01T00:00:00+00:00"])
    )
    async with make_client(recorder) as client:
        result = await client.query_flow_series(
            statistics=["recipients"],
            timeframe=Timeframe(key="last_7_days"),
            interval="daily",
            conversion_metric_id="M1",
        )
    assert sent_body(recorder)["data"]["attributes"]["interval"] == "daily"
    assert result.date_times == [datetime(2024, 1, 1, tzinfo=UTC)]


async def test_form_and_segment_values_use_their_endpoints() -> None:
    recorder = Recorder(report("form-values-report", []), report("segment-values-report", []))
    async with make_client(recorder) as client:
        await client.query_form_values(statistics=["views"], timeframe=Timeframe(key="today"))
        await client.query_segment_values(
            statistics=["total_members"], timeframe=Timeframe(key="today")
        )
    paths = [r.url.path for r in recorder.requests]
    assert paths == ["/api/form-values-reports", "/api/segment-values-reports"]
    assert "conversion_metric_id" not in sent_body(recorder, 0)["data"]["attributes"]


async def test_metric_aggregates_are_a_post_with_a_half_open_time_filter() -> None:
    recorder = Recorder(
        jsonapi(
            {
                "data": {
                    "type": "metric-aggregate",
                    "id": "agg",
                    "attributes": {
                        "dates": ["2024-01-01T00:00:00+00:00"],
                        "data": [{"dimensions": [], "measurements": {"count": [3.0]}}],
                    },
                    "links": {"self": f"{BASE}/api/metric-aggregates/agg"},
                }
            }
        )
    )
    async with make_client(recorder) as client:
        result = await client.query_metric_aggregates(
            metric_id="M1",
            start=datetime(2024, 1, 1, 5, tzinfo=UTC),
            end=datetime(2024, 1, 8, 5, tzinfo=UTC),
            measurements=["count"],
            timezone="America/New_York",
        )
    assert recorder.requests[0].url.path == "/api/metric-aggregates"
    attributes = sent_body(recorder)["data"]["attributes"]
    assert attributes["filter"] == [
        "greater-or-equal(datetime,2024-01-01T00:00:00)",
        "less-than(datetime,2024-01-08T00:00:00)",
    ]
    assert attributes["interval"] == "day" and attributes["timezone"] == "America/New_York"
    assert result.data[0].measurements == {"count": [3.0]}


async def test_a_report_without_results_is_an_invalid_payload() -> None:
    recorder = Recorder(jsonapi({"data": {"type": "campaign-values-report", "attributes": {}}}))
    async with make_client(recorder) as client:
        with pytest.raises(KlaviyoInvalidPayloadError) as raised:
            await client.query_campaign_values(
                statistics=["opens"], timeframe=Timeframe(key="today"), conversion_metric_id="M1"
            )
    assert not raised.value.retryable


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"key": "today", "start": datetime(2024, 1, 1, tzinfo=UTC)},
        {"start": datetime(2024, 1, 1, tzinfo=UTC)},
        {"start": datetime(2024, 1, 2, tzinfo=UTC), "end": datetime(2024, 1, 1, tzinfo=UTC)},
    ],
)
def test_a_timeframe_is_a_key_or_an_ordered_range(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="timeframe"):
        Timeframe(**kwargs)
