"""The dashboard's data: overview KPIs, performance tables and charts over a date range."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import Field

from klaviyo_analytics.analytics import kpis, performance
from klaviyo_analytics.analytics.kpis import Change, Overview
from klaviyo_analytics.analytics.periods import DateRange
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


class OverviewResponse(Sourced):
    """The range's KPIs, each with the previous range's figure and the change in %.

    Money and rates are decimal strings (exact); `change_pct` is a number or null.
    """

    timezone: str
    range: DateRange
    previous_range: DateRange
    revenue: Change
    net_revenue: Change
    refunds: Change
    orders: Change
    aov: Change
    unique_customers: Change
    subscribers: Change
    open_rate: Change
    click_rate: Change
    conversion_rate: Change
    form_submissions: Change
    revenue_by_channel: dict[str, Decimal]
    data_through: datetime | None
    subscribers_source: str
    coverage: Coverage | None = Field(
        default=None,
        description=(
            "what the database holds for the range: data, empty (zeros within the synced "
            "history), before_history, after_history (past what was synced), no_data; null for "
            "an answer from Klaviyo"
        ),
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
    """A chart's points over the range."""

    timezone: str
    range: DateRange
    points: list[RowT]


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
) -> OverviewResponse:
    values: dict[str, Any] = {f.name: getattr(ov, f.name) for f in fields(ov)}
    return OverviewResponse(source=source, timezone=tz, coverage=covered, **values)


@router.get("/overview", response_model=OverviewResponse, summary="Overview KPIs of a date range")
async def overview(request: Request, state: State, principal: Caller, rq: Range) -> Response:
    """Return the KPIs from the database, labelled with what it holds for the range.

    Only before the first events sync may it answer from Klaviyo (and start that sync once)."""
    lo, hi = rq.range.bounds(rq.tz)

    async def produce() -> OverviewResponse:
        async def local(conn: Conn) -> tuple[Overview, Coverage]:
            return await kpis.overview(conn, rq.range, rq.tz), await coverage(conn, lo, hi)

        async def names(conn: Conn) -> dict[str, str]:
            return {m.name: m.id for m in reversed(await metric_names(conn))}

        if state.klaviyo is not None and await may_ask_klaviyo(state, "events"):
            ids = await state.db.run(names, readonly=True)
            remote = await klaviyo_overview(state.klaviyo, rq.range, rq.tz, ids)
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
    response_model=ChartResponse[performance.RevenuePoint],
    summary="Revenue and orders per day and channel",
)
async def revenue_chart(request: Request, state: State, principal: Caller, rq: Range) -> Response:
    """Return revenue and orders per local day and channel."""
    return await _chart(
        request,
        state,
        principal,
        rq,
        row=performance.RevenuePoint,
        group="charts",
        fetch=lambda c: performance.revenue_by_day(c, rq.range, rq.tz),
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
    response_model=ChartResponse[performance.EngagementPoint],
    summary="Open and click rates per day and channel",
)
async def engagement_chart(
    request: Request, state: State, principal: Caller, rq: Range
) -> Response:
    """Return open and click rates per local day and channel."""
    return await _chart(
        request,
        state,
        principal,
        rq,
        row=performance.EngagementPoint,
        group="charts",
        fetch=lambda c: performance.engagement_by_day(c, rq.range, rq.tz),
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
