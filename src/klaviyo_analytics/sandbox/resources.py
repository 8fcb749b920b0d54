"""The catalogue endpoints: metrics, profiles, campaigns, flows, lists, segments, forms, templates."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from klaviyo_analytics.sandbox import filters as f
from klaviyo_analytics.sandbox.apierror import ApiError, invalid
from klaviyo_analytics.sandbox.filters import Condition, parse_filter
from klaviyo_analytics.sandbox.state import (
    SandboxState,
    base_url,
    decode_cursor,
    encode_cursor,
    includes,
    next_link,
    page_size,
    respond,
    sparse,
)

Getter = Callable[[Any], Any]


def _matches(cond: Condition, value: Any) -> bool:
    op, want = cond.op, cond.value
    if op == "equals":
        return bool(value == want)
    if op == "any":
        return value in want
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


def _sort_key(request: Request, getters: dict[str, Getter], default: str) -> tuple[Getter, bool]:
    sort = request.query_params.get("sort") or default
    field = sort.lstrip("-")
    if field not in getters:
        raise invalid(f"'{sort}' is not a valid sort.", "sort")
    return getters[field], sort.startswith("-")


def paged(
    state: SandboxState,
    request: Request,
    *,
    operation: str,
    items: Sequence[Any],
    render: Callable[[Any, str], dict[str, Any]],
    resource: str,
    allowed: dict[str, f.FieldSpec] | None = None,
    getters: dict[str, Getter] | None = None,
    default_size: int | None = None,
    max_size: int | None = None,
    default_sort: str = "id",
    include_allowed: set[str] | None = None,
    included: Callable[[list[Any], set[str], str], list[dict[str, Any]]] | None = None,
    required_filter: str | None = None,
) -> Response:
    """Filter, sort and page an in-memory collection; raise ApiError for bad parameters."""
    headers = state.guard(request, operation)
    size = page_size(request, default_size, max_size) if max_size and default_size else None
    conditions = parse_filter(request.query_params.get("filter"), allowed or {}, resource)
    if required_filter and not any(c.field == required_filter for c in conditions):
        raise invalid(f"A filter on '{required_filter}' is required, e.g. "
                      f"equals({required_filter},'email').", "filter")  # fmt: skip
    getters = getters or {}
    chosen = [it for it in items if all(_matches(c, getters[c.field](it)) for c in conditions)]
    if request.query_params.get("sort") is not None or default_sort in getters:
        key, reverse = _sort_key(request, getters, default_sort)
        chosen.sort(key=key, reverse=reverse)
    include = includes(request, include_allowed or set())
    offset = 0
    cursor = decode_cursor(request, 1)
    if cursor is not None:
        offset = cursor[0]
    page = chosen[offset : offset + size] if size else chosen
    base = base_url(request)
    links = {"self": str(request.url)}
    if size and offset + size < len(chosen):
        links["next"] = next_link(request, encode_cursor(offset + size))
    doc: dict[str, Any] = {"data": [sparse(request, resource, render(it, base)) for it in page],
                           "links": links}  # fmt: skip
    if include_allowed is not None and included is not None and include:
        doc["included"] = included(page, include, base)
    return respond(doc, headers)


def _not_found(kind: str, ident: str) -> ApiError:
    return ApiError(404, "not_found", "Not found.", f"A {kind} with id {ident} does not exist.")


def route_table(state: SandboxState) -> dict[str, Callable[..., Any]]:
    """Return the catalogue handlers keyed by path."""
    cat = state.catalog
    r = state.renderer
    by_name: Callable[[Any], Any] = lambda x: x.name  # noqa: E731
    by_id: Callable[[Any], Any] = lambda x: x.id  # noqa: E731

    async def metrics(request: Request) -> Response:
        return paged(state, request, operation="get_metrics", items=cat.metrics,
                     render=lambda m, b: r.metric(m.index, b), resource="metric",
                     allowed=f.METRICS, default_sort="",
                     getters={"integration.name": lambda m: m.integration["name"],
                              "integration.category": lambda m: m.integration["category"]})  # fmt: skip

    async def profiles(request: Request) -> Response:
        headers = state.guard(request, "get_profiles")
        size = page_size(request, 20, 100)
        conditions = parse_filter(request.query_params.get("filter"), f.PROFILES, "profile")
        n = cat.options.profiles
        mask = np.ones(n, dtype=bool)
        for cond in conditions:
            if cond.field in ("created", "updated"):
                col = cat.profile_created if cond.field == "created" else cat.profile_updated
                mask &= col > cond.value if cond.op == "greater-than" else col < cond.value
            elif cond.field == "id":
                wanted = cond.value if cond.op == "any" else [cond.value]
                ids = [i for i in (cat.profile_index(w) for w in wanted) if i is not None]
                keep = np.zeros(n, dtype=bool)
                keep[ids] = True
                mask &= keep
            else:
                emails = cond.value if cond.op == "any" else [cond.value]
                keep = np.zeros(n, dtype=bool)
                for i in range(n):  # email lookups are rare; a scan keeps ids index-free
                    if r.profile(i, "")["attributes"]["email"] in emails:
                        keep[i] = True
                mask &= keep
        index = np.flatnonzero(mask)
        sort = request.query_params.get("sort") or "id"
        if sort.lstrip("-") not in ("id", "created", "updated"):
            raise invalid(f"'{sort}' is not a valid sort for the resource 'profile'.", "sort")
        if sort.lstrip("-") == "updated":
            index = index[np.argsort(cat.profile_updated[index], kind="stable")]
        if sort.startswith("-"):
            index = index[::-1]
        cursor = decode_cursor(request, 1)
        offset = cursor[0] if cursor else 0
        base = base_url(request)
        links = {"self": str(request.url)}
        if offset + size < index.size:
            links["next"] = next_link(request, encode_cursor(offset + size))
        data = [sparse(request, "profile", r.profile(int(i), base))
                for i in index[offset : offset + size]]  # fmt: skip
        return respond({"data": data, "links": links}, headers)

    def campaign_included(page: list[Any], include: set[str], base: str) -> list[dict[str, Any]]:
        return (
            [r.campaign_message(cp, base) for cp in page] if "campaign-messages" in include else []
        )

    async def campaigns(request: Request) -> Response:
        return paged(state, request, operation="get_campaigns", items=cat.campaigns,
                     render=r.campaign, resource="campaign", allowed=f.CAMPAIGNS,
                     default_size=100, max_size=100, default_sort="created_at",
                     include_allowed={"campaign-messages", "tags"}, included=campaign_included,
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
        if cp is None:
            raise _not_found("campaign", cid)
        base = base_url(request)
        doc = {"data": [r.campaign_message(cp, base)], "links": {"self": str(request.url)}}
        return respond(doc, headers)

    def flow_included(page: list[Any], include: set[str], base: str) -> list[dict[str, Any]]:
        if "flow-actions" not in include:
            return []
        return [r.flow_action(a, base) for fl in page for a in fl.actions]

    async def flows(request: Request) -> Response:
        return paged(state, request, operation="get_flows", items=cat.flows, render=r.flow,
                     resource="flow", allowed=f.FLOWS, default_size=50, max_size=50,
                     include_allowed={"flow-actions", "tags"}, included=flow_included,
                     getters={"id": by_id, "name": by_name, "status": lambda x: "live",
                              "archived": lambda x: False, "created": lambda x: x.created,
                              "updated": lambda x: x.created + 86_400,
                              "trigger_type": lambda x: x.trigger_type})  # fmt: skip

    async def flow_actions(request: Request) -> Response:
        fid = request.path_params["id"]
        fl = cat.flow_by_id.get(fid)
        if fl is None:
            state.guard(request, "get_actions_for_flow")
            raise _not_found("flow", fid)
        return paged(state, request, operation="get_actions_for_flow", items=fl.actions,
                     render=r.flow_action, resource="flow-action", allowed=f.SIMPLE_IDS,
                     default_size=50, max_size=50, getters={"id": by_id})  # fmt: skip

    async def flow_messages(request: Request) -> Response:
        aid = request.path_params["id"]
        action = cat.action_by_id.get(aid)
        if action is None:
            state.guard(request, "get_flow_action_messages")
            raise _not_found("flow action", aid)
        items = [] if action.message_index is None else [cat.flow_messages[action.message_index]]
        return paged(state, request, operation="get_flow_action_messages", items=items,
                     render=r.flow_message, resource="flow-message", allowed=f.SIMPLE_IDS,
                     default_size=50, max_size=50, getters={"id": by_id})  # fmt: skip

    def groups(kind: str) -> Callable[[Request], Any]:
        entries = cat.lists if kind == "list" else cat.segments

        async def handler(request: Request) -> Response:
            return paged(state, request, operation=f"get_{kind}s", items=entries,
                         render=lambda g, b: r.group(kind, g.index, b), resource=kind,
                         allowed=f.GROUPS, default_size=10, max_size=10,
                         getters={"id": by_id, "name": by_name, "created": lambda x: x.created,
                                  "updated": lambda x: x.updated})  # fmt: skip

        return handler

    def group(kind: str) -> Callable[[Request], Any]:
        by_group_id = {g.id: g for g in (cat.lists if kind == "list" else cat.segments)}

        async def handler(request: Request) -> Response:
            headers = state.guard(request, f"get_{kind}")
            ident = request.path_params["id"]
            entry = by_group_id.get(ident)
            if entry is None:
                raise _not_found(kind, ident)
            doc = r.group(kind, entry.index, base_url(request))
            extra = request.query_params.get(f"additional-fields[{kind}]", "")
            if "profile_count" in extra.split(","):
                doc["attributes"]["profile_count"] = r.group_size(kind, entry.index)
            return respond({"data": doc, "links": {"self": str(request.url)}}, headers)

        return handler

    async def forms(request: Request) -> Response:
        return paged(state, request, operation="get_forms", items=cat.forms,
                     render=lambda x, b: r.form(x.index, b), resource="form", allowed=f.FORMS,
                     default_size=20, max_size=100, default_sort="created_at",
                     getters={"id": by_id, "name": by_name, "status": lambda x: x.status,
                              "created_at": lambda x: x.created,
                              "updated_at": lambda x: x.updated})  # fmt: skip

    async def templates(request: Request) -> Response:
        return paged(state, request, operation="get_templates",
                     items=list(range(len(cat.templates))), render=r.template,
                     resource="template", allowed=f.SIMPLE_IDS, default_size=10, max_size=10,
                     getters={"id": lambda i: cat.templates[i][0]})  # fmt: skip

    async def accounts(request: Request) -> Response:
        headers = state.guard(request, "get_accounts")
        base = base_url(request)
        return respond({"data": [r.account(base)], "links": {"self": str(request.url)}}, headers)

    return {
        "/api/accounts": accounts,
        "/api/metrics": metrics,
        "/api/profiles": profiles,
        "/api/campaigns": campaigns,
        "/api/campaigns/{id}/campaign-messages": campaign_messages,
        "/api/flows": flows,
        "/api/flows/{id}/flow-actions": flow_actions,
        "/api/flow-actions/{id}/flow-messages": flow_messages,
        "/api/lists": groups("list"),
        "/api/lists/{id}": group("list"),
        "/api/segments": groups("segment"),
        "/api/segments/{id}": group("segment"),
        "/api/forms": forms,
        "/api/templates": templates,
    }
