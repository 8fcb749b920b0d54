"""The catalogue endpoints: metrics, profiles, campaigns, flows, lists, segments, forms, templates."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from klaviyo_analytics.sandbox.apierror import ApiError, invalid
from klaviyo_analytics.sandbox.catalog import Flow, FlowAction
from klaviyo_analytics.sandbox.filters import Condition
from klaviyo_analytics.sandbox.profiles_api import ProfileIndex, list_profiles
from klaviyo_analytics.sandbox.query import Query, read_query
from klaviyo_analytics.sandbox.state import (
    SandboxState,
    base_url,
    decode_cursor,
    encode_cursor,
    next_link,
    page_size,
    respond,
)

Getter = Callable[[Any], Any]


def _matches(cond: Condition, value: Any) -> bool:
    op, want = cond.op, cond.value
    if op in ("equals", "any") and isinstance(want, list):
        return value in want
    if op == "equals":
        return bool(value == want)
    if op == "contains":
        return str(want) in str(value)
    if op == "starts-with":
        return str(value).startswith(str(want))
    if op == "ends-with":
        return str(value).endswith(str(want))
    if op == "greater-than":
        return bool(value > want)
    if op == "greater-or-equal":
        return bool(value >= want)
    if op == "less-than":
        return bool(value < want)
    if op == "less-or-equal":
        return bool(value <= want)
    return False


Included = Callable[[list[Any], Query, str], list[dict[str, Any]]]


def paged(
    state: SandboxState,
    request: Request,
    *,
    operation: str,
    items: Sequence[Any],
    render: Callable[[Any, str], dict[str, Any]],
    resource: str,
    getters: dict[str, Getter] | None = None,
    default_size: int | None = None,
    max_size: int | None = None,
    default_sort: str = "id",
    included: Included | None = None,
    required_filter: str | None = None,
    identifiers: bool = False,
) -> Response:
    """Filter, sort and page an in-memory collection; raise ApiError for bad parameters.

    The filters, sorts, includes and fieldsets allowed are the spec's for `operation`;
    `getters` reads each of them from an item.
    """
    headers = state.guard(request, operation)
    size = page_size(request, default_size, max_size) if max_size and default_size else None
    query = read_query(request, operation, resource)
    conditions = query.conditions
    if required_filter and not any(c.field == required_filter for c in conditions):
        raise invalid(f"A filter on '{required_filter}' is required, e.g. "
                      f"equals({required_filter},'email').", "filter")  # fmt: skip
    getters = getters or {}
    chosen = [it for it in items if all(_matches(c, getters[c.field](it)) for c in conditions)]
    field, descending = query.sort_field(default_sort)
    if field in getters:
        chosen.sort(key=getters[field], reverse=descending)
    offset = 0
    cursor = decode_cursor(request, 1)
    if cursor is not None:
        offset = cursor[0]
    page = chosen[offset : offset + size] if size else chosen
    base = base_url(request)
    links = {"self": str(request.url)}
    if size and offset + size < len(chosen):
        links["next"] = next_link(request, encode_cursor(offset + size))
    docs = [render(it, base) for it in page]
    data = [{"type": d["type"], "id": d["id"]} if identifiers else query.project(d) for d in docs]
    doc: dict[str, Any] = {"data": data, "links": links}
    if query.include:
        extra = included(page, query, base) if included is not None else []
        doc["included"] = [query.project(d) for d in extra]
    return respond(doc, headers)


def _action_type(action: FlowAction) -> str:
    return "TIME_DELAY" if action.kind == "delay" else f"SEND_{action.kind.upper()}"


def _not_found(kind: str, ident: str) -> ApiError:
    return ApiError(404, "not_found", "Not found.", f"A {kind} with id {ident} does not exist.")


def route_table(state: SandboxState) -> dict[str, Callable[..., Any]]:
    """Return the catalogue handlers keyed by path."""
    cat = state.catalog
    r = state.renderer
    by_name: Callable[[Any], Any] = lambda x: x.name  # noqa: E731
    by_id: Callable[[Any], Any] = lambda x: x.id  # noqa: E731
    facts = state.profile_facts
    lookup = ProfileIndex(state)

    def flow_triggers(kind: str, index: int) -> list[Flow]:
        return [fl for fl in cat.flows if r.triggers(fl) == (kind, index)]

    def trigger_included(kind: str) -> Included:
        def build(page: list[Any], query: Query, base: str) -> list[dict[str, Any]]:
            if "flow-triggers" not in query.include:
                return []
            seen = {fl.id: fl for it in page for fl in flow_triggers(kind, it.index)}
            return [r.flow(fl, base) for fl in seen.values()]

        return build

    async def metrics(request: Request) -> Response:
        return paged(state, request, operation="get_metrics", items=cat.metrics,
                     render=lambda m, b: r.metric(m.index, b), resource="metric",
                     default_sort="", included=trigger_included("metric"),
                     getters={"integration.name": lambda m: m.integration["name"],
                              "integration.category": lambda m: m.integration["category"]})  # fmt: skip

    async def profiles(request: Request) -> Response:
        return await list_profiles(state, request, facts, lookup)

    def campaign_included(page: list[Any], query: Query, base: str) -> list[dict[str, Any]]:
        if "campaign-messages" not in query.include:
            return []
        return [r.campaign_message(cp, base) for cp in page]

    async def campaigns(request: Request) -> Response:
        return paged(state, request, operation="get_campaigns", items=cat.campaigns,
                     render=r.campaign, resource="campaign", default_size=100, max_size=100,
                     default_sort="created_at", included=campaign_included,
                     required_filter="messages.channel",
                     getters={"id": by_id, "name": by_name, "messages.channel": lambda x: x.channel,
                              "status": lambda x: "Sent", "archived": lambda x: False,
                              "created_at": lambda x: x.send_ts - 3 * 86_400,
                              "scheduled_at": lambda x: x.send_ts - 86_400,
                              "updated_at": lambda x: x.send_ts})  # fmt: skip

    async def campaign_messages(request: Request) -> Response:
        cid = request.path_params["id"]
        cp = cat.campaign_by_id.get(cid)
        headers = state.guard(request, "get_messages_for_campaign")
        query = read_query(request, "get_messages_for_campaign", "campaign-message")
        if cp is None:
            raise _not_found("campaign", cid)
        base = base_url(request)
        doc: dict[str, Any] = {"data": [query.project(r.campaign_message(cp, base))],
                               "links": {"self": str(request.url)}}  # fmt: skip
        if query.include:
            included = []
            if "campaign" in query.include:
                included.append(r.campaign(cp, base))
            if "template" in query.include and cp.template_id is not None:
                included.append(r.template(cat.template_index[cp.template_id], base))
            doc["included"] = [query.project(d) for d in included]
        return respond(doc, headers)

    def flow_included(page: list[Any], query: Query, base: str) -> list[dict[str, Any]]:
        if "flow-actions" not in query.include:
            return []
        return [r.flow_action(a, base) for fl in page for a in fl.actions]

    async def flows(request: Request) -> Response:
        return paged(state, request, operation="get_flows", items=cat.flows, render=r.flow,
                     resource="flow", default_size=50, max_size=50, included=flow_included,
                     getters={"id": by_id, "name": by_name, "status": lambda x: "live",
                              "archived": lambda x: False, "created": lambda x: x.created,
                              "updated": lambda x: x.created + 86_400,
                              "trigger_type": lambda x: x.trigger_type})  # fmt: skip

    def flow_actions(operation: str, identifiers: bool) -> Callable[[Request], Any]:
        async def handler(request: Request) -> Response:
            return _flow_actions(request, operation, identifiers)

        return handler

    def _flow_actions(request: Request, operation: str, identifiers: bool) -> Response:
        fid = request.path_params["id"]
        fl = cat.flow_by_id.get(fid)
        if fl is None:
            state.guard(request, operation)
            raise _not_found("flow", fid)
        return paged(state, request, operation=operation, items=fl.actions, identifiers=identifiers,
                     render=r.flow_action, resource="flow-action", default_size=50, max_size=50,
                     getters={"id": by_id, "action_type": _action_type,
                              "status": lambda a: "live",
                              "created": lambda a: cat.flows[a.flow_index].created,
                              "updated": lambda a: cat.flows[a.flow_index].created + 86_400})  # fmt: skip

    def flow_messages(operation: str, identifiers: bool) -> Callable[[Request], Any]:
        async def handler(request: Request) -> Response:
            return _flow_messages(request, operation, identifiers)

        return handler

    def _flow_messages(request: Request, operation: str, identifiers: bool) -> Response:
        aid = request.path_params["id"]
        action = cat.action_by_id.get(aid)
        if action is None:
            state.guard(request, operation)
            raise _not_found("flow action", aid)
        items = [] if action.message_index is None else [cat.flow_messages[action.message_index]]
        return paged(state, request, operation=operation, items=items, identifiers=identifiers,
                     render=r.flow_message, resource="flow-message", default_size=50,
                     max_size=50,
                     getters={"id": by_id, "name": by_name,
                              "created": lambda m: cat.flows[m.flow_index].created,
                              "updated": lambda m: cat.flows[m.flow_index].created + 86_400})  # fmt: skip

    def groups(kind: str) -> Callable[[Request], Any]:
        entries = cat.lists if kind == "list" else cat.segments

        async def handler(request: Request) -> Response:
            return paged(state, request, operation=f"get_{kind}s", items=entries,
                         render=lambda g, b: r.group(kind, g.index, b), resource=kind,
                         default_size=10, max_size=10, included=trigger_included(kind),
                         getters={"id": by_id, "name": by_name, "created": lambda x: x.created,
                                  "updated": lambda x: x.updated, "is_active": lambda x: True,
                                  "is_starred": lambda x: x.index == 0})  # fmt: skip

        return handler

    def group(kind: str) -> Callable[[Request], Any]:
        by_group_id = {g.id: g for g in (cat.lists if kind == "list" else cat.segments)}

        async def handler(request: Request) -> Response:
            headers = state.guard(request, f"get_{kind}")
            query = read_query(request, f"get_{kind}", kind)
            ident = request.path_params["id"]
            entry = by_group_id.get(ident)
            if entry is None:
                raise _not_found(kind, ident)
            base = base_url(request)
            doc = r.group(kind, entry.index, base)
            if query.wants(kind, "profile_count"):
                doc["attributes"]["profile_count"] = r.group_size(kind, entry.index)
            body: dict[str, Any] = {"data": query.project(doc),
                                    "links": {"self": str(request.url)}}  # fmt: skip
            if query.include:
                extra = trigger_included(kind)([entry], query, base)
                body["included"] = [query.project(d) for d in extra]
            return respond(body, headers)

        return handler

    async def forms(request: Request) -> Response:
        return paged(state, request, operation="get_forms", items=cat.forms,
                     render=lambda x, b: r.form(x.index, b), resource="form",
                     default_size=20, max_size=100, default_sort="created_at",
                     getters={"id": by_id, "name": by_name, "status": lambda x: x.status,
                              "ab_test": lambda x: False, "created_at": lambda x: x.created,
                              "updated_at": lambda x: x.updated})  # fmt: skip

    async def templates(request: Request) -> Response:
        return paged(state, request, operation="get_templates",
                     items=list(range(len(cat.templates))), render=r.template,
                     resource="template", default_size=10, max_size=10,
                     getters={"id": lambda i: cat.templates[i][0],
                              "name": lambda i: cat.templates[i][1],
                              "created": lambda i: cat.templates[i][2],
                              "updated": lambda i: cat.templates[i][2]})  # fmt: skip

    async def accounts(request: Request) -> Response:
        headers = state.guard(request, "get_accounts")
        query = read_query(request, "get_accounts", "account")
        base = base_url(request)
        return respond({"data": [query.project(r.account(base))],
                        "links": {"self": str(request.url)}}, headers)  # fmt: skip

    return {
        "/api/accounts": accounts,
        "/api/metrics": metrics,
        "/api/profiles": profiles,
        "/api/campaigns": campaigns,
        "/api/campaigns/{id}/campaign-messages": campaign_messages,
        "/api/flows": flows,
        "/api/flows/{id}/flow-actions": flow_actions("get_actions_for_flow", False),
        "/api/flows/{id}/relationships/flow-actions": flow_actions("get_action_ids_for_flow", True),
        "/api/flow-actions/{id}/flow-messages": flow_messages("get_flow_action_messages", False),
        "/api/flow-actions/{id}/relationships/flow-messages": flow_messages(
            "get_message_ids_for_flow_action", True
        ),
        "/api/lists": groups("list"),
        "/api/lists/{id}": group("list"),
        "/api/segments": groups("segment"),
        "/api/segments/{id}": group("segment"),
        "/api/forms": forms,
        "/api/templates": templates,
    }
