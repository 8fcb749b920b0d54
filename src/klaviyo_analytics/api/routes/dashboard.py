"""The dashboard's data: overview KPIs, performance tables and charts over a date range."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import MISSING, dataclass, fields
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar, get_type_hints

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import Field, create_model

from klaviyo_analytics.analytics import details, kpis, performance
from klaviyo_analytics.analytics.kpis import Compare, Overview
from klaviyo_analytics.analytics.periods import Bucket, DateRange, local_today
from klaviyo_analytics.analytics.table import Table
from klaviyo_analytics.api.auth import Principal
from klaviyo_analytics.api.deps import (
    ID_PATTERN,
    AppState,
    Caller,
    KnownQuery,
    Range,
    RangeQuery,
    State,
    answer,
    ttl_for,
)
from klaviyo_analytics.api.fallback import (
    Coverage,
    coverage,
    klaviyo_overview,
    may_ask_klaviyo,
    sync_once,
)
from klaviyo_analytics.api.models import ERROR_RESPONSES, Sourced
from klaviyo_analytics.db.pool import Conn
from klaviyo_analytics.db.repos.operations import metric_names

router = APIRouter(
    prefix="/api", tags=["dashboard"], responses=ERROR_RESPONSES, dependencies=[KnownQuery]
)

RowT = TypeVar("RowT")


def _overview_fields() -> dict[str, Any]:
    hints = get_type_hints(Overview)
    found: dict[str, Any] = {}
    for f in fields(Overview):
        default = f.default if f.default is not MISSING else ...
        found[f.name] = (hints[f.name], default)
    return found


# The response is the analytics `Overview` (one definition of its fields) plus where it came
# from: the model is built from the dataclass, so a figure added there appears here.
OverviewResponse: Any = create_model(
    "OverviewResponse",
    __base__=Sourced,
    __doc__=(
        "The range's KPIs, each with the comparison range's figure and the change in %.\n\n"
        "Money and rates are decimal strings (exact), counts integers; `change_pct` is a "
        "number or null."
    ),
    timezone=(str, ...),
    coverage=(
        Coverage | None,
        Field(
            default=None,
            description=(
                "what the database holds for the range: data, empty (zeros within the synced "
                "history), before_history, after_history (past what was synced), no_data; null "
                "for an answer from Klaviyo"
            ),
        ),
    ),
    **_overview_fields(),
)


class TableResponse(Sourced, Generic[RowT]):
    """One page of a performance table; `total` counts the matching rows on all pages."""

    timezone: str
    range: DateRange
    sort: str
    order: Literal["asc", "desc"]
    limit: int
    offset: int
    total: int
    rows: list[RowT]


class ChartResponse(Sourced, Generic[RowT]):
    """A chart's points over the range (`bucket`: hour, day, week or month, where it varies)."""

    timezone: str
    range: DateRange
    bucket: Bucket | None = None
    points: list[RowT]


@dataclass(frozen=True)
class RevenueChart:
    bucket: Bucket
    points: list[performance.RevenuePoint]
    previous_range: DateRange | None
    previous: list[performance.RevenuePoint] | None


class RevenueChartResponse(ChartResponse[performance.RevenuePoint]):
    """Revenue per bucket and channel; with `compare`, the comparison range's series too
    (`previous`, the same buckets in the same order), else null."""

    previous_range: DateRange | None = None
    previous: list[performance.RevenuePoint] | None = None


class EngagementChartResponse(ChartResponse[performance.EngagementPoint]):
    """Open and click rates per day and channel; with `compare`, the comparison range's days
    too (`previous`), else null."""

    previous_range: DateRange | None = None
    previous: list[performance.EngagementPoint] | None = None


ChartCompare = Annotated[
    Compare | None,
    Query(
        description=(
            "also return the comparison range's series in `previous` (previous or year), "
            "bucket for bucket"
        )
    ),
]

T = TypeVar("T")


async def _and_compared(
    conn: Conn,
    rq: RangeQuery,
    compare: Compare | None,
    series: Callable[[Conn, DateRange], Awaitable[T]],
) -> tuple[T, DateRange | None, T | None]:
    """Return the range's series and, with `compare`, the comparison range and its series."""
    found = await series(conn, rq.range)
    if compare is None:
        return found, None, None
    other = kpis.comparison(rq.range, compare)
    return found, other, await series(conn, other)


Sort = Annotated[str | None, Query(max_length=40, description="column to sort by")]
Order = Annotated[Literal["asc", "desc"], Query(description="sort direction")]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
Search = Annotated[
    str | None,
    Query(max_length=200, pattern=r"^[^\x00]*$", description="case-insensitive name filter"),
]
Top = Annotated[int, Query(ge=1, le=100, description="how many")]


def _overview_body(
    ov: Overview,
    tz: str,
    source: Literal["database", "klaviyo"],
    covered: Coverage | None = None,
) -> Sourced:
    values: dict[str, Any] = {f.name: getattr(ov, f.name) for f in fields(ov)}
    body: Sourced = OverviewResponse(source=source, timezone=tz, coverage=covered, **values)
    return body


CompareQuery = Annotated[
    Compare,
    Query(
        description=(
            "what the range is compared with: previous (the preceding range of equal length) "
            "or year (the same dates a year earlier)"
        )
    ),
]


@router.get("/overview", response_model=OverviewResponse, summary="Overview KPIs of a date range")
async def overview(
    request: Request,
    state: State,
    principal: Caller,
    rq: Range,
    compare: CompareQuery = "previous",
) -> Response:
    """Return the KPIs from the database, labelled with what it holds for the range.

    Only before the first events sync may it answer from Klaviyo (and start that sync once)."""
    lo, hi = rq.range.bounds(rq.tz)

    async def produce() -> Sourced:
        async def local(conn: Conn) -> tuple[Overview, Coverage]:
            found = await kpis.overview(conn, rq.range, rq.tz, compare)
            return found, await coverage(conn, lo, hi)

        async def names(conn: Conn) -> dict[str, str]:
            return {m.name: m.id for m in reversed(await metric_names(conn))}

        if state.klaviyo is not None and await may_ask_klaviyo(state, "events"):
            ids = await state.db.run(names, readonly=True)
            remote = await klaviyo_overview(state.klaviyo, rq.range, rq.tz, ids, compare)
            sync_once(state, "events")
            return _overview_body(remote, rq.tz, "klaviyo")
        found, covered = await state.db.run(local, readonly=True)
        return _overview_body(found, rq.tz, "database", covered)

    return await answer(
        request,
        state,
        principal,
        group="overview",
        ttl_s=ttl_for(state, "overview"),
        produce=produce,
    )


async def _table(
    request: Request,
    state: AppState,
    principal: Principal,
    rq: RangeQuery,
    *,
    row: type[Any],
    group: str,
    sort: str,
    order: Literal["asc", "desc"],
    limit: int,
    offset: int,
    fetch: Callable[[Conn], Awaitable[Table[Any]]],
) -> Response:
    async def produce() -> Sourced:
        table = await state.db.run(fetch, readonly=True)
        return TableResponse[row](  # type: ignore[valid-type]
            source="database",
            timezone=rq.tz,
            range=rq.range,
            sort=sort,
            order=order,
            limit=limit,
            offset=offset,
            total=table.total,
            rows=table.rows,
        )

    return await answer(
        request, state, principal, group=group, ttl_s=ttl_for(state, group), produce=produce
    )


def _chart(
    request: Request,
    state: AppState,
    principal: Principal,
    rq: RangeQuery,
    *,
    row: type[Any],
    group: str,
    fetch: Callable[[Conn], Awaitable[list[Any]]],
) -> Awaitable[Response]:
    async def produce() -> Sourced:
        points = await state.db.run(fetch, readonly=True)
        return ChartResponse[row](  # type: ignore[valid-type]
            source="database", timezone=rq.tz, range=rq.range, points=points
        )

    return answer(
        request, state, principal, group=group, ttl_s=ttl_for(state, group), produce=produce
    )


TableFetch = Callable[..., Awaitable[Table[Any]]]


def _table_route(
    path: str,
    *,
    name: str,
    row: type[Any],
    group: str,
    default_sort: str,
    fetch: TableFetch,
    summary: str,
    doc: str,
) -> None:
    """Add a sortable, paged, searchable table endpoint over one performance query."""

    async def endpoint(
        request: Request,
        state: State,
        principal: Caller,
        rq: Range,
        sort: Sort = None,
        order: Order = "desc",
        limit: Limit = 50,
        offset: Offset = 0,
        search: Search = None,
    ) -> Response:
        column = sort or default_sort
        return await _table(
            request,
            state,
            principal,
            rq,
            row=row,
            group=group,
            sort=column,
            order=order,
            limit=limit,
            offset=offset,
            fetch=lambda c: fetch(
                c,
                rq.range,
                rq.tz,
                sort=column,
                descending=order == "desc",
                limit=limit,
                offset=offset,
                search=search,
            ),
        )

    endpoint.__name__ = name
    endpoint.__doc__ = doc
    router.get(path, response_model=TableResponse[row], summary=summary)(endpoint)  # type: ignore[valid-type]


_table_route(
    "/campaigns",
    name="campaigns",
    row=performance.CampaignRow,
    group="campaigns",
    default_sort="revenue",
    fetch=performance.campaign_performance,
    summary="Campaign performance (sortable, paged, searchable)",
    doc="Return campaigns with sends, opens, clicks, conversions and revenue in the range.",
)
_table_route(
    "/flows",
    name="flows",
    row=performance.FlowRow,
    group="flows",
    default_sort="revenue",
    fetch=performance.flow_performance,
    summary="Flow performance (sortable, paged, searchable)",
    doc="Return flows with their message figures and revenue in the range.",
)
_table_route(
    "/forms",
    name="forms",
    row=performance.FormRow,
    group="forms",
    default_sort="submissions",
    fetch=performance.form_performance,
    summary="Signup form performance (sortable, paged, searchable)",
    doc="Return forms with views, submissions and submission rate in the range.",
)
_table_route(
    "/segments",
    name="segments",
    row=performance.SegmentRow,
    group="segments",
    default_sort="profile_count",
    fetch=performance.segment_performance,
    summary="Segments (sortable, paged, searchable)",
    doc="Return segments with their sizes and members' revenue in the range.",
)


class CampaignDetailResponse(Sourced):
    """One campaign: its figures from its send date to today (`range`), and its first 72 hours
    after the send, hour by hour (`hours`; empty for a campaign never sent)."""

    timezone: str
    range: DateRange
    send_time: datetime | None
    campaign: performance.CampaignRow
    hours: list[details.CampaignHour]


@router.get(
    "/campaigns/{campaign_id}",
    response_model=CampaignDetailResponse,
    summary="One campaign's figures and its first 72 hours",
    responses={404: {"description": "Unknown campaign"}},
)
async def campaign(
    request: Request,
    state: State,
    principal: Caller,
    campaign_id: Annotated[str, Path(pattern=ID_PATTERN)],
) -> Response:
    """Return the campaign's figures since its send and its first 72 hours; 404 if unknown."""
    tz = await state.timezone()
    today = local_today(tz, state.clock())

    async def produce() -> Sourced:
        found = await state.db.run(
            lambda c: details.campaign_detail(c, campaign_id, tz, today), readonly=True
        )
        return CampaignDetailResponse(
            source="database",
            timezone=tz,
            range=found.range,
            send_time=found.send_time,
            campaign=found.campaign,
            hours=found.hours,
        )

    return await answer(
        request,
        state,
        principal,
        group="campaigns",
        ttl_s=ttl_for(state, "campaigns"),
        produce=produce,
    )


@router.get(
    "/flows/{flow_id}/messages",
    response_model=TableResponse[performance.FlowMessageRow],
    summary="Performance of each message of one flow",
    responses={404: {"description": "Unknown flow"}},
)
async def flow_messages(
    request: Request,
    state: State,
    principal: Caller,
    rq: Range,
    flow_id: Annotated[str, Path(pattern=ID_PATTERN)],
    sort: Sort = None,
    order: Order = "desc",
    limit: Limit = 100,
    offset: Offset = 0,
) -> Response:
    """Return the figures of each message of the flow; 404 for an unknown flow."""
    column = sort or "revenue"
    return await _table(
        request,
        state,
        principal,
        rq,
        row=performance.FlowMessageRow,
        group="flows",
        sort=column,
        order=order,
        limit=limit,
        offset=offset,
        fetch=lambda c: performance.flow_message_performance(
            c,
            rq.range,
            rq.tz,
            flow_id,
            sort=column,
            descending=order == "desc",
            limit=limit,
            offset=offset,
        ),
    )


@router.get(
    "/charts/revenue",
    response_model=RevenueChartResponse,
    summary="Revenue and orders per hour, day, week or month and channel",
)
async def revenue_chart(
    request: Request,
    state: State,
    principal: Caller,
    rq: Range,
    compare: ChartCompare = None,
) -> Response:
    """Return revenue and orders per local bucket and channel: hours for a range of one or two
    days, days up to 92 days, weeks up to two years, months beyond; with `compare`, the same
    for the comparison range (`previous_range`, `previous`)."""

    async def produce() -> Sourced:
        async def fetch(conn: Conn) -> RevenueChart:
            (bucket, points), other, before = await _and_compared(
                conn, rq, compare, lambda c, r: performance.revenue_series(c, r, rq.tz)
            )
            return RevenueChart(bucket, points, other, None if before is None else before[1])

        found = await state.db.run(fetch, readonly=True)
        return RevenueChartResponse(
            source="database",
            timezone=rq.tz,
            range=rq.range,
            bucket=found.bucket,
            points=found.points,
            previous_range=found.previous_range,
            previous=found.previous,
        )

    return await answer(
        request, state, principal, group="charts", ttl_s=ttl_for(state, "charts"), produce=produce
    )


@router.get(
    "/charts/distribution",
    response_model=ChartResponse[performance.ChannelShare],
    summary="Revenue share per channel",
)
async def distribution_chart(
    request: Request, state: State, principal: Caller, rq: Range
) -> Response:
    """Return each channel's revenue, orders and share of revenue."""
    return await _chart(
        request,
        state,
        principal,
        rq,
        row=performance.ChannelShare,
        group="charts",
        fetch=lambda c: performance.channel_distribution(c, rq.range, rq.tz),
    )


@router.get(
    "/charts/engagement",
    response_model=EngagementChartResponse,
    summary="Open and click rates per day and channel",
)
async def engagement_chart(
    request: Request, state: State, principal: Caller, rq: Range, compare: ChartCompare = None
) -> Response:
    """Return open and click rates per local day and channel; with `compare`, the same for
    the comparison range (`previous_range`, `previous`)."""

    async def produce() -> Sourced:
        points, other, before = await state.db.run(
            lambda c: _and_compared(
                c, rq, compare, lambda c2, r: performance.engagement_by_day(c2, r, rq.tz)
            ),
            readonly=True,
        )
        return EngagementChartResponse(
            source="database",
            timezone=rq.tz,
            range=rq.range,
            points=points,
            previous_range=other,
            previous=before,
        )

    return await answer(
        request, state, principal, group="charts", ttl_s=ttl_for(state, "charts"), produce=produce
    )


def _top_route(
    path: str,
    *,
    name: str,
    row: type[Any],
    fetch: Callable[..., Awaitable[list[Any]]],
    summary: str,
    doc: str,
) -> None:
    """Add a top-N chart endpoint over one ranking query."""

    async def endpoint(
        request: Request, state: State, principal: Caller, rq: Range, limit: Top = 5
    ) -> Response:
        return await _chart(
            request,
            state,
            principal,
            rq,
            row=row,
            group="charts",
            fetch=lambda c: fetch(c, rq.range, rq.tz, limit=limit),
        )

    endpoint.__name__ = name
    endpoint.__doc__ = doc
    router.get(path, response_model=ChartResponse[row], summary=summary)(endpoint)  # type: ignore[valid-type]


_top_route(
    "/charts/top-flows",
    name="top_flows_chart",
    row=performance.FlowRow,
    fetch=performance.top_flows,
    summary="The flows with the most revenue",
    doc="Return the top flows by attributed revenue.",
)
_top_route(
    "/charts/top-segments",
    name="top_segments_chart",
    row=performance.SegmentRow,
    fetch=performance.top_segments,
    summary="The largest segments",
    doc="Return the top segments.",
)
_top_route(
    "/charts/top-forms",
    name="top_forms_chart",
    row=performance.FormRow,
    fetch=performance.top_forms,
    summary="The forms with the most submissions",
    doc="Return the top forms by submissions.",
)
