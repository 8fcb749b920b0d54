"""Every sandbox endpoint answers what Klaviyo's spec describes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from klaviyo_analytics.sandbox.generator import StoreGenerator
from tests.integration.sandbox.conftest import SchemaCheck

GETS = [
    ("/api/accounts", ""),
    ("/api/metrics", ""),
    ("/api/metrics", "filter=equals(integration.name,'Shopify')"),
    ("/api/events", "page[size]=50&include=metric,profile,attributions"),
    ("/api/events", "page[size]=20&sort=-datetime"),
    ("/api/profiles", "page[size]=100"),
    ("/api/campaigns", "filter=equals(messages.channel,'email')&include=campaign-messages"),
    ("/api/campaigns", "filter=equals(messages.channel,'sms')"),
    ("/api/flows", "include=flow-actions"),
    ("/api/lists", ""),
    ("/api/segments", ""),
    ("/api/forms", ""),
    ("/api/templates", ""),
]


@pytest.mark.parametrize(("path", "query"), GETS)
def test_list_endpoint_matches_spec(
    api: httpx.Client, check_response: SchemaCheck, path: str, query: str
) -> None:
    response = api.get(f"{path}?{query}" if query else path)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["data"], f"{path} returned no data"
    check_response("get", path, 200, body)


def test_placed_order_events_with_attributions_match_spec(
    api: httpx.Client, check_response: SchemaCheck, sandbox_generator: StoreGenerator
) -> None:
    order = next(m for m in sandbox_generator.catalog.metrics if m.name == "Placed Order")
    response = api.get(
        "/api/events",
        params={"filter": f'equals(metric_id,"{order.id}")', "include": "attributions",
                "page[size]": "200"},
    )  # fmt: skip
    body = response.json()
    check_response("get", "/api/events", 200, body)
    assert any(item["type"] == "attribution" for item in body["included"])


def test_nested_collections_match_spec(api: httpx.Client, check_response: SchemaCheck) -> None:
    campaigns = api.get("/api/campaigns", params={"filter": "equals(messages.channel,'email')"})
    campaign_id = campaigns.json()["data"][0]["id"]
    messages = api.get(f"/api/campaigns/{campaign_id}/campaign-messages")
    check_response("get", "/api/campaigns/{id}/campaign-messages", 200, messages.json())
    flow_id = api.get("/api/flows").json()["data"][0]["id"]
    actions = api.get(f"/api/flows/{flow_id}/flow-actions").json()
    check_response("get", "/api/flows/{id}/flow-actions", 200, actions)
    send = next(a for a in actions["data"] if a["relationships"]["flow-messages"]["data"])
    flow_messages = api.get(f"/api/flow-actions/{send['id']}/flow-messages").json()
    assert flow_messages["data"]
    check_response("get", "/api/flow-actions/{id}/flow-messages", 200, flow_messages)


def _report_body(kind: str, attributes: dict[str, Any]) -> dict[str, Any]:
    return {"data": {"type": kind, "attributes": attributes}}


def test_report_endpoints_match_spec(
    api: httpx.Client, check_response: SchemaCheck, sandbox_generator: StoreGenerator
) -> None:
    order = next(m for m in sandbox_generator.catalog.metrics if m.name == "Placed Order")
    timeframe = {"key": "last_30_days"}
    message_stats = ["opens", "open_rate", "clicks_unique", "conversions", "conversion_value"]
    cases = [
        ("/api/campaign-values-reports", "campaign-values-report",
         {"statistics": message_stats, "timeframe": timeframe, "conversion_metric_id": order.id}),
        ("/api/flow-values-reports", "flow-values-report",
         {"statistics": message_stats, "timeframe": timeframe, "conversion_metric_id": order.id}),
        ("/api/flow-series-reports", "flow-series-report",
         {"statistics": ["opens"], "timeframe": timeframe, "interval": "weekly",
          "conversion_metric_id": order.id}),
        ("/api/form-values-reports", "form-values-report",
         {"statistics": ["viewed_form", "submits", "submit_rate"], "timeframe": timeframe}),
        ("/api/segment-values-reports", "segment-values-report",
         {"statistics": ["total_members"], "timeframe": timeframe}),
        ("/api/metric-aggregates", "metric-aggregate",
         {"metric_id": order.id, "measurements": ["count", "sum_value", "unique"],
          "interval": "day", "by": ["$attributed_message"],
          "filter": ["greater-or-equal(datetime,2026-06-20T00:00:00)",
                     "less-than(datetime,2026-07-01T00:00:00)"]}),
    ]  # fmt: skip
    for path, kind, attributes in cases:
        response = api.post(path, json=_report_body(kind, attributes))
        assert response.status_code == 200, (path, response.text)
        body = response.json()
        assert body["data"]["attributes"]["results" if "report" in kind else "data"], path
        check_response("post", path, 200, body)


def test_error_bodies_match_spec(api: httpx.Client, check_response: SchemaCheck) -> None:
    response = api.get("/api/events", params={"filter": "equals(nope,1)"})
    assert response.status_code == 400
    check_response("get", "/api/events", 400, response.json())


@pytest.mark.parametrize("kind", ["list", "segment"])
def test_single_list_and_segment_with_profile_count_match_spec(
    api: httpx.Client, check_response: SchemaCheck, kind: str
) -> None:
    ident = api.get(f"/api/{kind}s").json()["data"][0]["id"]
    response = api.get(
        f"/api/{kind}s/{ident}", params={f"additional-fields[{kind}]": "profile_count"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    check_response("get", f"/api/{kind}s/{{id}}", 200, body)
    assert body["data"]["attributes"]["profile_count"] > 0
    assert api.get(f"/api/{kind}s/nope").status_code == 404
