"""The relationship endpoints: every `links.related` and `links.self` the sandbox renders answers.

`/api/<type>s/{id}/<name>` returns the related resources and
`/api/<type>s/{id}/relationships/<name>` their identifiers, as Klaviyo's do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from klaviyo_analytics.sandbox.apierror import ApiError
from klaviyo_analytics.sandbox.columns import SEQ_BITS
from klaviyo_analytics.sandbox.generator import SPILL_DAYS, EventColumns
from klaviyo_analytics.sandbox.operations import operations
from klaviyo_analytics.sandbox.profiles_api import ProfileIndex, profile_document
from klaviyo_analytics.sandbox.query import read_query
from klaviyo_analytics.sandbox.state import (
    SandboxState,
    base_url,
    decode_cursor,
    encode_cursor,
    next_link,
    page_size,
    respond,
)

Json = dict[str, Any]
# A resolver gets the parent id and the base URL; it returns a resource (or None) for a to-one
# relationship, a list for a to-many one; it raises ApiError (404) for an unknown parent.
Resolver = Callable[[str, str], "Json | list[Json] | None"]


def _not_found(kind: str, ident: str) -> ApiError:
    return ApiError(404, "not_found", "Not found.", f"A {kind} with id {ident} does not exist.")


def _operation_ids() -> dict[str, str]:
    return {op.path: op.operation_id for op in operations().values()}


def find_event(state: SandboxState, event_id: str) -> tuple[EventColumns, int] | None:
    """Return the day columns and position of an event id, or None when there is no such event."""
    try:
        number = int(event_id, 16)
    except ValueError:
        return None
    origin = number >> SEQ_BITS
    now = state.clock.now_ts()
    for day in range(origin, origin + SPILL_DAYS + 1):
        ev = state.generator.day(day)
        hit = np.flatnonzero(ev.id == number)
        if hit.size and int(ev.ts[hit[0]]) <= now:
            return ev, int(hit[0])
    return None


def resolvers(state: SandboxState) -> dict[str, Resolver]:
    """Return the resolver of every relationship the renderer writes links for, by path."""
    cat = state.catalog
    r = state.renderer

    def event(ident: str) -> tuple[EventColumns, int]:
        found = find_event(state, ident)
        if found is None:
            raise _not_found("event", ident)
        return found

    def campaign(ident: str) -> Any:
        cp = cat.campaign_by_id.get(ident)
        if cp is None:
            raise _not_found("campaign", ident)
        return cp

    by_message = {cp.message_id: cp for cp in cat.campaigns}
    flow_messages = {m.id: m for m in cat.flow_messages}
    groups = {"list": {g.id: g for g in cat.lists}, "segment": {g.id: g for g in cat.segments}}
    metrics = cat.metric_by_id

    def message(ident: str) -> Any:
        cp = by_message.get(ident)
        if cp is None:
            raise _not_found("campaign message", ident)
        return cp

    def flow(ident: str) -> Any:
        fl = cat.flow_by_id.get(ident)
        if fl is None:
            raise _not_found("flow", ident)
        return fl

    def action(ident: str) -> Any:
        a = cat.action_by_id.get(ident)
        if a is None:
            raise _not_found("flow action", ident)
        return a

    def flow_message(ident: str) -> Any:
        m = flow_messages.get(ident)
        if m is None:
            raise _not_found("flow message", ident)
        return m

    def group(kind: str, ident: str) -> Any:
        g = groups[kind].get(ident)
        if g is None:
            raise _not_found(kind, ident)
        return g

    def template(template_id: str | None, base: str) -> Json | None:
        if template_id is None:
            return None
        return r.template(cat.template_index[template_id], base)

    def triggered(kind: str, index: int, base: str) -> list[Json]:
        return [r.flow(fl, base) for fl in cat.flows if r.triggers(fl) == (kind, index)]

    def event_metric(i: str, b: str) -> Json:
        ev, k = event(i)
        return r.metric(int(ev.metric[k]), b)

    def event_profile(i: str, b: str) -> Json | None:
        ev, k = event(i)
        return r.profile(int(ev.profile[k]), b) if int(ev.profile[k]) >= 0 else None

    def flow_action_messages(i: str, b: str) -> list[Json]:
        a = action(i)
        if a.message_index is None:
            return []
        return [r.flow_message(cat.flow_messages[a.message_index], b)]

    out: dict[str, Resolver] = {
        "/api/events/{id}/metric": event_metric,
        "/api/events/{id}/profile": event_profile,
        "/api/campaigns/{id}/campaign-messages": lambda i, b: [r.campaign_message(campaign(i), b)],
        "/api/campaigns/{id}/tags": lambda i, b: campaign(i) and [],
        "/api/campaign-messages/{id}/campaign": lambda i, b: r.campaign(message(i), b),
        "/api/campaign-messages/{id}/template": lambda i, b: template(message(i).template_id, b),
        "/api/flows/{id}/flow-actions": lambda i, b: [r.flow_action(a, b)
                                                      for a in flow(i).actions],
        "/api/flows/{id}/tags": lambda i, b: flow(i) and [],
        "/api/flow-actions/{id}/flow": lambda i, b: r.flow(cat.flows[action(i).flow_index], b),
        "/api/flow-actions/{id}/flow-messages": flow_action_messages,
        "/api/flow-messages/{id}/flow-action": lambda i, b: r.flow_action(
            cat.action_by_id[flow_message(i).action_id], b),
        "/api/flow-messages/{id}/template": lambda i, b: template(flow_message(i).template_id, b),
        "/api/metrics/{id}/flow-triggers": lambda i, b: triggered(
            "metric", metric_index(metrics, i), b),
    }  # fmt: skip
    for kind in ("list", "segment"):
        out[f"/api/{kind}s/{{id}}/tags"] = _group_tags(group, kind)
        out[f"/api/{kind}s/{{id}}/flow-triggers"] = _group_triggers(group, triggered, kind)
    return out


def _group_tags(group: Callable[[str, str], Any], kind: str) -> Resolver:
    def resolve(ident: str, base: str) -> list[Json]:
        group(kind, ident)
        return []  # the store's lists and segments carry no tags

    return resolve


def _group_triggers(group: Callable[[str, str], Any],
                    triggered: Callable[[str, int, str], list[Json]], kind: str) -> Resolver:  # fmt: skip
    def resolve(ident: str, base: str) -> list[Json]:
        return triggered(kind, int(group(kind, ident).index), base)

    return resolve


def metric_index(metrics: dict[str, Any], ident: str) -> int:
    """Return a metric's index; raise ApiError (404) for an unknown id."""
    m = metrics.get(ident)
    if m is None:
        raise _not_found("metric", ident)
    return int(m.index)


def _identifier(doc: Json) -> Json:
    return {"type": doc["type"], "id": doc["id"]}


def relationship_routes(state: SandboxState) -> dict[str, Callable[..., Any]]:
    """Return handlers for the related and relationships paths of every resolver."""
    ids = _operation_ids()
    routes: dict[str, Callable[..., Any]] = {}
    for path, resolve in resolvers(state).items():
        head, name = path.rsplit("/", 1)
        ids_path = f"{head}/relationships/{name}"
        for route, identifiers in ((path, False), (ids_path, True)):
            routes.setdefault(route, _handler(state, ids[route], resolve, identifiers))
    routes["/api/campaign-recipient-estimations/{id}"] = _estimation(state)
    for kind in ("list", "segment"):
        routes[f"/api/{kind}s/{{id}}/profiles"] = _members(state, kind, identifiers=False)
        routes[f"/api/{kind}s/{{id}}/relationships/profiles"] = _members(state, kind, True)
    return routes


def _handler(state: SandboxState, operation_id: str, resolve: Resolver,
             identifiers: bool) -> Callable[..., Any]:  # fmt: skip
    resource = operation_id.split("_for_")[0].removeprefix("get_")

    async def handler(request: Request) -> Response:
        headers = state.guard(request, operation_id)
        query = read_query(request, operation_id, resource)
        found = resolve(request.path_params["id"], base_url(request))
        if isinstance(found, list):
            data: Any = [_identifier(d) if identifiers else query.project(d) for d in found]
        elif found is None:
            data = None
        else:
            data = _identifier(found) if identifiers else query.project(found)
        return respond({"data": data, "links": {"self": str(request.url)}}, headers)

    return handler


def _estimation(state: SandboxState) -> Callable[..., Any]:
    cat = state.catalog

    async def handler(request: Request) -> Response:
        headers = state.guard(request, "get_campaign_recipient_estimation")
        query = read_query(request, "get_campaign_recipient_estimation", "campaign")
        ident = request.path_params["id"]
        cp = cat.campaign_by_id.get(ident)
        if cp is None:
            raise _not_found("campaign", ident)
        # The members of its list who existed on the day it went out, as the generator sends.
        active = max(1, int(np.searchsorted(cat.profile_created, cp.send_ts // 86_400 * 86_400)))
        count = int(np.count_nonzero(cat.list_masks[cp.list_index][:active]))
        doc = {
            "type": "campaign-recipient-estimation",
            "id": cp.id,
            "attributes": {"estimated_recipient_count": count},
            "links": {"self": f"{base_url(request)}/api/campaign-recipient-estimations/{cp.id}/"},
        }
        return respond({"data": query.project(doc), "links": {"self": str(request.url)}},
                       headers)  # fmt: skip

    return handler


def _members(state: SandboxState, kind: str, identifiers: bool) -> Callable[..., Any]:
    cat = state.catalog
    masks = cat.list_masks if kind == "list" else cat.segment_masks
    by_id = {g.id: g for g in (cat.lists if kind == "list" else cat.segments)}
    operation_id = f"get_profile{'_ids' if identifiers else 's'}_for_{kind}"
    lookup = ProfileIndex(state)

    async def handler(request: Request) -> Response:
        headers = state.guard(request, operation_id)
        size = page_size(request, 20, 100)
        query = read_query(request, operation_id, "profile")
        ident = request.path_params["id"]
        g = by_id.get(ident)
        if g is None:
            raise _not_found(kind, ident)
        now = state.clock.now_ts()
        mask = masks[g.index] & (cat.profile_created <= now)
        for cond in query.conditions:
            values = cond.value if isinstance(cond.value, list) else [cond.value]
            if cond.field == "joined_group_at":
                mask &= _cmp(cat.profile_created, cond.op, cond.value)
                continue
            if cond.field == "email":
                found = [lookup.by_email(str(v)) for v in values]
            elif cond.field == "phone_number":
                found = [i for v in values for i in lookup.by_phone(str(v))]
            elif cond.field == "profile_id":
                found = [cat.profile_index(str(v)) for v in values]
            else:  # push_token, _kx: the store's profiles have none
                found = []
            keep = np.zeros(mask.size, dtype=bool)
            keep[[i for i in found if i is not None]] = True
            mask &= keep
        index = np.flatnonzero(mask)
        if query.sort_field("joined_group_at")[1]:
            index = index[::-1]
        cursor = decode_cursor(request, 1)
        offset = cursor[0] if cursor else 0
        base = base_url(request)
        links = {"self": str(request.url)}
        if offset + size < index.size:
            links["next"] = next_link(request, encode_cursor(offset + size))
        page = [int(i) for i in index[offset : offset + size]]
        if identifiers:
            data = [{"type": "profile", "id": cat.profile_id(i)} for i in page]
        else:
            data = [profile_document(state, state.profile_facts, query, now, i, base, joined=True)
                    for i in page]  # fmt: skip
        return respond({"data": data, "links": links}, headers)

    return handler


def _cmp(col: np.ndarray, op: str, value: Any) -> np.ndarray:
    ops = {"greater-than": np.greater, "greater-or-equal": np.greater_equal,
           "less-than": np.less, "less-or-equal": np.less_equal}  # fmt: skip
    result: np.ndarray = ops[op](col, value)
    return result
