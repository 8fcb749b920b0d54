"""Every filter, sort and include Klaviyo's spec allows on the served endpoints is accepted.

The cases are built from the spec itself (`x-klaviyo-filters` and the parameter enums), so a
field the spec adds or the sandbox drops shows up here.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from klaviyo_analytics.sandbox.generator import StoreGenerator
from klaviyo_analytics.sandbox.operations import FieldRule, operation
from klaviyo_analytics.sandbox.render import iso
from tests.fixtures.sandbox import SMALL_STORE
from tests.integration.sandbox.conftest import SchemaCheck

SERVED = (
    "get_events", "get_profiles", "get_campaigns", "get_flows", "get_actions_for_flow",
    "get_flow_action_messages", "get_forms", "get_lists", "get_segments", "get_metrics",
    "get_templates", "get_profiles_for_list", "get_profiles_for_segment", "get_list",
    "get_segment", "get_messages_for_campaign", "get_action_ids_for_flow",
    "get_message_ids_for_flow_action",
)  # fmt: skip
CHANNEL = "equals(messages.channel,'email')"


def _url(op_id: str, gen: StoreGenerator) -> str:
    cat = gen.catalog
    ids = {"{id}": ""}
    path = operation(op_id).path
    if "flow-actions/{id}" in path:
        ids["{id}"] = next(
            a.id for fl in cat.flows for a in fl.actions if a.message_index is not None
        )
    elif path.startswith("/api/flows/"):
        ids["{id}"] = cat.flows[0].id
    elif path.startswith("/api/lists/"):
        ids["{id}"] = cat.lists[0].id
    elif path.startswith("/api/segments/"):
        ids["{id}"] = cat.segments[0].id
    elif path.startswith("/api/campaigns/"):
        ids["{id}"] = cat.campaigns[0].id
    return path.replace("{id}", ids["{id}"])


def _value(rule: FieldRule) -> str:
    return {"datetime": iso(int(SMALL_STORE.end.timestamp()) - 86_400), "bool": "true",
            "timestamp": str(int(SMALL_STORE.end.timestamp()) - 86_400)}.get(rule.kind, '"x"')  # fmt: skip


def _filter_cases() -> list[tuple[str, str]]:
    cases = []
    for op_id in SERVED:
        for field, rule in operation(op_id).filters.items():
            for op in sorted(rule.single):
                cases.append((op_id, f"{op}({field},{_value(rule)})"))
            for op in sorted(rule.list):
                cases.append((op_id, f"{op}({field},[{_value(rule)},{_value(rule)}])"))
            for op in sorted(rule.none):
                cases.append((op_id, f"{op}({field})"))
    return cases


def _get(api: httpx.Client, url: str, params: dict[str, str]) -> httpx.Response:
    return api.get(url, params=params)


@pytest.mark.parametrize(("op_id", "expression"), _filter_cases())
def test_every_filter_the_spec_allows_is_answered_in_its_shape(
    api: httpx.Client, check_response: SchemaCheck, sandbox_generator: StoreGenerator,
    op_id: str, expression: str,
) -> None:  # fmt: skip
    params = {"filter": expression}
    if op_id == "get_campaigns" and "messages.channel" not in expression:
        params["filter"] = f"{CHANNEL},{expression}"
    response = _get(api, _url(op_id, sandbox_generator), params)
    assert response.status_code == 200, response.text
    check_response("get", operation(op_id).path, 200, response.json())


@pytest.mark.parametrize(
    ("op_id", "sort"),
    [(op_id, s) for op_id in SERVED for s in sorted(operation(op_id).sorts)],
)
def test_every_sort_the_spec_allows_orders_the_data(
    api: httpx.Client, check_response: SchemaCheck, sandbox_generator: StoreGenerator,
    op_id: str, sort: str,
) -> None:  # fmt: skip
    params = {"sort": sort}
    if op_id == "get_campaigns":
        params["filter"] = CHANNEL
    response = _get(api, _url(op_id, sandbox_generator), params)
    assert response.status_code == 200, response.text
    body = response.json()
    check_response("get", operation(op_id).path, 200, body)
    field = sort.lstrip("-")
    values: list[Any] = [d.get("attributes", {}).get(field) for d in body["data"]]
    if field == "id":
        values = [d["id"] for d in body["data"]]
    if values and None not in values:
        assert values == sorted(values, reverse=sort.startswith("-")), sort


@pytest.mark.parametrize(
    ("op_id", "include"),
    [(op_id, i) for op_id in SERVED for i in sorted(operation(op_id).includes)],
)
def test_every_include_the_spec_allows_is_answered_in_its_shape(
    api: httpx.Client, check_response: SchemaCheck, sandbox_generator: StoreGenerator,
    op_id: str, include: str,
) -> None:  # fmt: skip
    params = {"include": include}
    if op_id == "get_campaigns":
        params["filter"] = CHANNEL
    response = _get(api, _url(op_id, sandbox_generator), params)
    assert response.status_code == 200, response.text
    body = response.json()
    check_response("get", operation(op_id).path, 200, body)
    assert "included" in body


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/events", {"filter": 'equals(uuid,"x")'}),
        ("/api/profiles", {"filter": "greater-or-equal(created,2026-01-01T00:00:00Z)"}),
        ("/api/templates", {"filter": "equals(editor_type,'CODE')"}),
        ("/api/lists", {"filter": "contains(name,'News')"}),
        ("/api/segments", {"filter": "any(is_starred,[true])"}),
        ("/api/profiles", {"sort": "first_name"}),
        ("/api/flows", {"include": "flow-triggers"}),
        ("/api/metrics", {"include": "tags"}),
    ],
)
def test_what_the_spec_does_not_allow_stays_a_400_in_klaviyos_shape(
    api: httpx.Client, check_response: SchemaCheck, path: str, params: dict[str, str]
) -> None:
    response = api.get(path, params=params)
    assert response.status_code == 400, response.text
    check_response("get", path, 400, response.json())
    assert response.json()["errors"][0]["source"]["parameter"] in params


def test_comma_joined_filters_are_their_conjunction(
    api: httpx.Client, sandbox_generator: StoreGenerator
) -> None:
    lo = sandbox_generator.start_ts + 3 * 86_400
    hi = lo + 2 * 86_400
    joined = f"greater-or-equal(datetime,{iso(lo)}),less-or-equal(datetime,{iso(hi)})"
    nested = f"and(greater-or-equal(datetime,{iso(lo)}),less-or-equal(datetime,{iso(hi)}))"

    def ids(expression: str) -> list[str]:
        out: list[str] = []
        params: dict[str, str] | None = {"filter": expression, "page[size]": "1000"}
        url: str | None = "/api/events"
        while url:
            page = api.get(url, params=params).json()
            out += [d["id"] for d in page["data"]]
            url, params = page["links"].get("next"), None
        return out

    got = ids(joined)
    assert got == ids(nested)
    assert len(got) == sandbox_generator.count_events(since=lo, until=hi + 1) > 0


def test_list_valued_equals_on_names_selects_those_lists(
    api: httpx.Client, sandbox_generator: StoreGenerator
) -> None:
    lists = sandbox_generator.catalog.lists
    wanted = f'equals(name,["{lists[0].name}","{lists[2].name}"])'
    body = api.get("/api/lists", params={"filter": wanted}).json()
    assert {d["id"] for d in body["data"]} == {lists[0].id, lists[2].id}


def test_templates_filter_and_sort_on_updated(
    api: httpx.Client, sandbox_generator: StoreGenerator
) -> None:
    templates = sandbox_generator.catalog.templates
    cut = sorted(t[2] for t in templates)[len(templates) // 2]
    body = api.get("/api/templates", params={"filter": f"greater-than(updated,{iso(cut)})",
                                             "sort": "updated"}).json()  # fmt: skip
    seen = []
    while True:
        seen += [d["attributes"]["updated"] for d in body["data"]]
        if not body["links"].get("next"):
            break
        body = api.get(body["links"]["next"]).json()
    assert seen == sorted(seen) and len(seen) == sum(1 for t in templates if t[2] > cut)


@pytest.mark.parametrize("relation", ["flow-actions", "relationships/flow-actions"])
def test_flow_actions_filter_by_action_type(
    api: httpx.Client, sandbox_generator: StoreGenerator, relation: str
) -> None:
    fl = next(f for f in sandbox_generator.catalog.flows if len(f.actions) > 2)
    body = api.get(f"/api/flows/{fl.id}/{relation}",
                   params={"filter": "equals(action_type,'TIME_DELAY')"}).json()  # fmt: skip
    assert [d["id"] for d in body["data"]] == [a.id for a in fl.actions if a.kind == "delay"]
