"""Sparse fieldsets, relationship links, trailing slashes and rate-limit headers, as Klaviyo's."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from klaviyo_analytics.sandbox.generator import StoreGenerator
from klaviyo_analytics.sandbox.operations import operations
from tests.fixtures.sandbox import SandboxFactory
from tests.integration.sandbox.conftest import SchemaCheck, client_for

EMAIL = "equals(messages.channel,'email')"


def test_events_fieldsets_apply_to_data_and_included_metric_and_profile(
    api: httpx.Client, check_sparse_response: SchemaCheck
) -> None:
    body = api.get("/api/events", params={
        "fields[event]": "datetime,event_properties", "include": "metric,profile",
        "fields[metric]": "name,integration", "fields[profile]": "email,location.country",
        "page[size]": "50",
    }).json()  # fmt: skip
    check_sparse_response("get", "/api/events", 200, body)
    assert all(set(d["attributes"]) == {"datetime", "event_properties"} for d in body["data"])
    metrics = [i for i in body["included"] if i["type"] == "metric"]
    profiles = [i for i in body["included"] if i["type"] == "profile"]
    assert metrics and all(set(m["attributes"]) == {"name", "integration"} for m in metrics)
    assert profiles and all(p["attributes"] == {"email": p["attributes"]["email"],
                                                "location": {"country": "United States"}}
                            for p in profiles)  # fmt: skip


def test_campaign_fieldsets_apply_to_the_included_messages_with_dotted_names(
    api: httpx.Client, check_sparse_response: SchemaCheck
) -> None:
    body = api.get("/api/campaigns", params={
        "filter": EMAIL, "include": "campaign-messages", "fields[campaign]": "name,send_time",
        "fields[campaign-message]": "definition.content.subject,send_times",
    }).json()  # fmt: skip
    check_sparse_response("get", "/api/campaigns", 200, body)
    assert all(set(d["attributes"]) == {"name", "send_time"} for d in body["data"])
    for message in body["included"]:
        attrs = message["attributes"]
        assert set(attrs) == {"definition", "send_times"}
        assert set(attrs["definition"]) == {"content"}
        assert set(attrs["definition"]["content"]) == {"subject"}


def test_flow_list_segment_and_message_fieldsets(
    api: httpx.Client, check_sparse_response: SchemaCheck, sandbox_generator: StoreGenerator
) -> None:
    cat = sandbox_generator.catalog
    flows = api.get("/api/flows", params={"include": "flow-actions", "fields[flow]": "name",
                                          "fields[flow-action]": "created"}).json()  # fmt: skip
    check_sparse_response("get", "/api/flows", 200, flows)
    assert all(set(d["attributes"]) == {"name"} for d in flows["data"])
    assert flows["included"] and all(set(a["attributes"]) == {"created"}
                                     for a in flows["included"])  # fmt: skip
    for kind, entry in (("list", cat.lists[0]), ("segment", cat.segments[0])):
        one = api.get(f"/api/{kind}s/{entry.id}", params={
            f"fields[{kind}]": "name,profile_count", f"additional-fields[{kind}]": "profile_count",
            "include": "flow-triggers", "fields[flow]": "trigger_type",
        }).json()  # fmt: skip
        check_sparse_response("get", f"/api/{kind}s/{{id}}", 200, one)
        assert set(one["data"]["attributes"]) == {"name", "profile_count"}
        assert all(set(f["attributes"]) == {"trigger_type"} for f in one["included"])
    welcome = api.get(f"/api/lists/{cat.lists[0].id}", params={"include": "flow-triggers"}).json()
    assert {f["attributes"]["trigger_type"] for f in welcome["included"]} == {"Added to List"}
    messages = api.get(f"/api/campaigns/{cat.campaigns[0].id}/campaign-messages",
                       params={"fields[campaign-message]": "created_at"}).json()  # fmt: skip
    check_sparse_response("get", "/api/campaigns/{id}/campaign-messages", 200, messages)
    assert [set(m["attributes"]) for m in messages["data"]] == [{"created_at"}]


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/api/events", {"fields[event]": "datetime,nope"}, "fields[event]"),
        ("/api/events", {"fields[campaign]": "name"}, "fields[campaign]"),
        ("/api/events", {"include": "metric,campaign"}, "include"),
        ("/api/profiles", {"additional-fields[profile]": "segments"}, "additional-fields[profile]"),
        ("/api/campaigns", {"filter": EMAIL, "include": "template"}, "include"),
    ],
)
def test_unknown_fields_and_includes_are_a_400_in_klaviyos_shape(
    api: httpx.Client, check_response: SchemaCheck, path: str, params: dict[str, str],
    parameter: str,
) -> None:  # fmt: skip
    response = api.get(path, params=params)
    assert response.status_code == 400
    check_response("get", path, 400, response.json())
    assert response.json()["errors"][0]["source"] == {"parameter": parameter}


def _spec_path(url: str, base: str, ident: str) -> str:
    return url.removeprefix(base).rstrip("/").replace(ident, "{id}")


def test_every_relationship_link_answers_in_its_spec_shape(
    api: httpx.Client, check_response: SchemaCheck, sandbox_generator: StoreGenerator
) -> None:
    base = str(api.base_url).rstrip("/")
    docs = []
    for path, params in (
        ("/api/events", {"page[size]": "20"}), ("/api/metrics", {}),
        ("/api/campaigns", {"filter": EMAIL}), ("/api/campaigns", {"filter": EMAIL,
                                                                    "include": "campaign-messages"}),
        ("/api/flows", {"include": "flow-actions"}), ("/api/lists", {}), ("/api/segments", {}),
    ):  # fmt: skip
        body = api.get(path, params=params).json()
        docs += body["data"] + body.get("included", [])
    actions = [d for d in docs if d["type"] == "flow-action"]
    send = next(a for a in actions if a["relationships"]["flow-messages"]["data"])
    docs += api.get(send["relationships"]["flow-messages"]["links"]["related"]).json()["data"]
    checked = set()
    for doc in docs:
        for name, relationship in doc.get("relationships", {}).items():
            links = relationship.get("links")
            if links is None:
                assert doc["type"] == "event" and name == "attributions"
                continue
            for key in ("related", "self"):
                template = _spec_path(links[key], base, doc["id"])
                if (template, doc["type"]) in checked:
                    continue
                response = api.get(links[key])
                assert response.status_code == 200, (links[key], response.text)
                check_response("get", template, 200, response.json())
                checked.add((template, doc["type"]))
    assert len(checked) >= 30
    known = {op.path for op in operations().values()}
    assert {t for t, _ in checked} <= known


def test_campaign_messages_are_reached_from_links_related(
    api: httpx.Client, sandbox_generator: StoreGenerator
) -> None:
    campaign = api.get("/api/campaigns", params={"filter": EMAIL}).json()["data"][0]
    related = campaign["relationships"]["campaign-messages"]["links"]["related"]
    messages = api.get(related).json()["data"]
    assert [m["id"] for m in messages] == [
        sandbox_generator.catalog.campaign_by_id[campaign["id"]].message_id
    ]


def test_campaign_recipient_estimation_counts_the_list_members_it_went_to(
    api: httpx.Client, check_response: SchemaCheck, sandbox_generator: StoreGenerator
) -> None:
    cat = sandbox_generator.catalog
    cp = cat.campaigns[0]
    response = api.get(f"/api/campaign-recipient-estimations/{cp.id}")
    assert response.status_code == 200, response.text
    check_response("get", "/api/campaign-recipient-estimations/{id}", 200, response.json())
    ev = sandbox_generator.events_between(cp.send_ts, cp.send_ts + 3600)
    received = {0: "Received Email", 1: "Received SMS"}[int(cp.channel == "sms")]
    metric = next(m.index for m in cat.metrics if m.name == received)
    bounced = next(m.index for m in cat.metrics if m.name == "Bounced Email")
    sends = (ev.kind == 1) & (ev.source == cp.index) & np.isin(ev.metric, [metric, bounced])
    assert response.json()["data"]["attributes"]["estimated_recipient_count"] == int(sends.sum())
    assert api.get("/api/campaign-recipient-estimations/NOPE").status_code == 404


def test_a_trailing_slash_answers_like_the_path_without_it(api: httpx.Client) -> None:
    plain = api.get("/api/metrics")
    slashed = api.get("/api/metrics/", follow_redirects=False)
    assert slashed.status_code == 200
    assert slashed.json()["data"] == plain.json()["data"]
    assert api.get("/api/flows/", follow_redirects=False).status_code == 200


def test_a_429_carries_the_ratelimit_headers(make_sandbox: SandboxFactory) -> None:
    server = make_sandbox(rate_limits=True)
    with client_for(server) as client:
        responses = [client.get("/api/flows") for _ in range(4)]  # get_flows: 3/s burst
    limited = responses[-1]
    assert limited.status_code == 429
    assert limited.headers["RateLimit-Limit"] == "3"
    assert limited.headers["RateLimit-Remaining"] == "0"
    assert 1 <= int(limited.headers["RateLimit-Reset"]) <= 1
    assert limited.headers["Retry-After"] == limited.headers["RateLimit-Reset"]
