"""GET /api/events: walk the generated days in (datetime, id) order, page by page.

The cursor is the (timestamp, id) of the last event served, so a page is found by binary search
in the one or two days it touches, and the same request always gives the same page.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from klaviyo_analytics.sandbox import catalog as c
from klaviyo_analytics.sandbox.catalog import DAY
from klaviyo_analytics.sandbox.filters import time_range
from klaviyo_analytics.sandbox.generator import EventColumns
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


def _after(ev: EventColumns, ts: int, eid: int) -> int:
    """Index of the first event strictly after (ts, eid)."""
    i0 = int(np.searchsorted(ev.ts, ts, "left"))
    i1 = int(np.searchsorted(ev.ts, ts, "right"))
    return i0 + int(np.searchsorted(ev.id[i0:i1], eid, "right"))


def _before(ev: EventColumns, ts: int, eid: int) -> int:
    """Index just past the last event strictly before (ts, eid)."""
    i0 = int(np.searchsorted(ev.ts, ts, "left"))
    i1 = int(np.searchsorted(ev.ts, ts, "right"))
    return i0 + int(np.searchsorted(ev.id[i0:i1], eid, "left"))


async def list_events(state: SandboxState, request: Request) -> Response:
    """Answer GET /api/events; raise ApiError for bad parameters."""
    headers = state.guard(request, "get_events")
    size = page_size(request, 200, 1000)
    query = read_query(request, "get_events", "event")
    conditions = query.conditions
    descending = query.sort_field("datetime")[1]
    include = query.include
    gen = state.generator
    now = state.clock.now_ts()
    lo, hi = time_range(conditions, ("datetime", "timestamp"))
    lo = gen.start_ts if lo is None else max(lo, gen.start_ts)
    hi = now + 1 if hi is None else min(hi, now + 1)
    metrics_wanted: list[int] | None = None
    profile: int | None = None
    need_profile = False
    for cond in conditions:
        if cond.field == "metric_id":
            wanted = cond.value if isinstance(cond.value, list) else [cond.value]
            found_ids = [m.index for m in map(state.catalog.metric_by_id.get, wanted) if m]
            metrics_wanted = found_ids or [-1]
        elif cond.field == "profile_id":
            found_profile = state.catalog.profile_index(cond.value)
            profile = found_profile if found_profile is not None else -2
        elif cond.field == "profile":
            need_profile = True
    cursor = decode_cursor(request, 2)

    picked: list[tuple[EventColumns, np.ndarray]] = []
    found_count = 0
    if hi > lo:
        if descending:
            days = range((cursor[0] if cursor else hi - 1) // DAY, lo // DAY - 1, -1)
        else:
            days = range((cursor[0] if cursor else lo) // DAY, (hi - 1) // DAY + 1)
        for day in days:
            ev = gen.day(day)
            a = int(np.searchsorted(ev.ts, lo, "left"))
            b = int(np.searchsorted(ev.ts, hi, "left"))
            if cursor:
                if descending:
                    b = min(b, _before(ev, *cursor))
                else:
                    a = max(a, _after(ev, *cursor))
            if b <= a:
                continue
            index = np.arange(a, b)
            mask = np.ones(b - a, dtype=bool)
            if metrics_wanted is not None:
                mask &= np.isin(ev.metric[a:b], metrics_wanted)
            if profile is not None:
                mask &= ev.profile[a:b] == profile
            if need_profile:
                mask &= ev.profile[a:b] >= 0
            index = index[mask]
            if descending:
                index = index[::-1]
            index = index[: size + 1 - found_count]
            if index.size:
                picked.append((ev, index))
                found_count += int(index.size)
            if found_count > size:
                break

    base = base_url(request)
    render = state.renderer
    data: list[dict[str, Any]] = []
    last: tuple[int, int] | None = None
    metrics: set[int] = set()
    profiles: set[int] = set()
    attributions: list[dict[str, Any]] = []
    for ev, index in picked:
        chosen = index[: size - len(data)].tolist()
        if not chosen:
            break
        data.extend(query.project(d) for d in render.events(ev, chosen, base))
        last = (int(ev.ts[chosen[-1]]), int(ev.id[chosen[-1]]))
        if include:
            metrics.update(ev.metric[chosen].tolist())
            profiles.update(p for p in ev.profile[chosen].tolist() if p >= 0)
            if "attributions" in include:
                attributions += [
                    render.attribution(ev, i, base)
                    for i in chosen
                    if int(ev.metric[i]) == c.PLACED_ORDER and int(ev.attr[i]) >= 0
                ]
    links: dict[str, str] = {"self": str(request.url)}
    if found_count > size and last is not None:
        links["next"] = next_link(request, encode_cursor(*last))
    doc: dict[str, Any] = {"data": data, "links": links}
    if include:
        included: list[dict[str, Any]] = []
        if "metric" in include:
            included += [render.metric(m, base) for m in sorted(metrics)]
        if "profile" in include:
            included += [render.profile(p, base) for p in sorted(profiles)]
        included += attributions
        doc["included"] = [query.project(d) for d in included]
    return respond(doc, headers)
