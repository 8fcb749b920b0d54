"""Analytics of one metric: time series, decomposition, correlation, anomalies, forecasts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from klaviyo_analytics.analytics import timeseries
from klaviyo_analytics.api.deps import ID_PATTERN, Caller, Range, State, answer, ttl_for
from klaviyo_analytics.api.models import ERROR_RESPONSES, RangeModel, Sourced

router = APIRouter(prefix="/api/analytics", tags=["analytics"], responses=ERROR_RESPONSES)

Interval = Literal["hour", "day", "week"]
Measure = Literal["count", "sum", "unique"]
MetricId = Annotated[str, Path(pattern=ID_PATTERN, description="a metric id (see /api/metrics)")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown metric"}}


class PointModel(BaseModel):
    """One bucket: its start in the store's zone, and its value."""

    at: datetime
    value: float


class SeriesResponse(Sourced):
    """A metric's values per bucket, oldest first."""

    metric_id: str
    interval: str
    measure: str
    timezone: str
    range: RangeModel
    downsampled: bool = Field(description="whether LTTB reduced the series to max_points")
    points: list[PointModel]


class DecompositionResponse(Sourced):
    """STL parts aligned with the points: value = trend + seasonal + residual."""

    metric_id: str
    interval: str
    measure: str
    timezone: str
    range: RangeModel
    period: int
    points: list[PointModel]
    trend: list[float]
    seasonal: list[float]
    residual: list[float]


class CorrelationResponse(Sourced):
    """Pearson's r of two metrics over the same buckets; null where undefined."""

    metric1: str
    metric2: str
    interval: str
    timezone: str
    range: RangeModel
    r: float | None
    n: int
    p_value: float | None


def _points(points: list[timeseries.Point]) -> list[PointModel]:
    return [PointModel(at=p.at, value=p.value) for p in points]


@router.get(
    "/timeseries/{metric_id}",
    response_model=SeriesResponse,
    summary="A metric per hour, day or week",
    responses=NOT_FOUND,
)
async def series(
    request: Request,
    state: State,
    principal: Caller,
    rq: Range,
    metric_id: MetricId,
    interval: Interval = "day",
    measure: Measure = "count",
    max_points: Annotated[
        int | None, Query(ge=3, le=10_000, description="downsample (LTTB) to at most this many")
    ] = None,
) -> Response:
    """Return the metric's series over the range, gap-filled with zeros."""
    lo, hi = rq.range.bounds(rq.tz)

    async def produce() -> SeriesResponse:
        s = await state.db.run(
            lambda c: timeseries.metric_series(
                c,
                metric_id,
                start=lo,
                end=hi,
                tz=rq.tz,
                interval=interval,
                measure=measure,
                max_points=max_points,
            ),
            readonly=True,
        )
        return SeriesResponse(
            source="database",
            metric_id=metric_id,
            interval=s.interval,
            measure=s.measure,
            timezone=rq.tz,
            range=RangeModel.model_validate(rq.range),
            downsampled=s.downsampled,
            points=_points(s.points),
        )

    return await answer(
        request,
        state,
        principal,
        group="analytics",
        ttl_s=ttl_for(state, "analytics"),
        produce=produce,
    )


@router.get(
    "/decomposition/{metric_id}",
    response_model=DecompositionResponse,
    summary="Trend, seasonality and residual of a metric (STL)",
    responses=NOT_FOUND,
)
async def decomposition(
    request: Request,
    state: State,
    principal: Caller,
    rq: Range,
    metric_id: MetricId,
    interval: Interval = "day",
    measure: Measure = "count",
    period: Annotated[int, Query(ge=2, le=366, description="seasonal period in buckets")] = 7,
) -> Response:
    """Decompose the metric's series; 422 when it holds fewer than two periods."""
    lo, hi = rq.range.bounds(rq.tz)

    async def produce() -> DecompositionResponse:
        s = await state.db.run(
            lambda c: timeseries.metric_series(
                c, metric_id, start=lo, end=hi, tz=rq.tz, interval=interval, measure=measure
            ),
            readonly=True,
        )
        d = timeseries.decompose(s, period=period)
        return DecompositionResponse(
            source="database",
            metric_id=metric_id,
            interval=interval,
            measure=measure,
            timezone=rq.tz,
            range=RangeModel.model_validate(rq.range),
            period=d.period,
            points=_points(d.points),
            trend=d.trend,
            seasonal=d.seasonal,
            residual=d.residual,
        )

    return await answer(
        request,
        state,
        principal,
        group="analytics",
        ttl_s=ttl_for(state, "analytics"),
        produce=produce,
    )


@router.get(
    "/correlation",
    response_model=CorrelationResponse,
    summary="Pearson correlation of two metrics",
    responses=NOT_FOUND,
)
async def correlation(
    request: Request,
    state: State,
    principal: Caller,
    rq: Range,
    metric1: Annotated[str, Query(pattern=ID_PATTERN)],
    metric2: Annotated[str, Query(pattern=ID_PATTERN)],
    interval: Interval = "day",
) -> Response:
    """Correlate two metrics' counts over the same buckets."""
    lo, hi = rq.range.bounds(rq.tz)

    async def produce() -> CorrelationResponse:
        c = await state.db.run(
            lambda conn: timeseries.correlation(
                conn, metric1, metric2, start=lo, end=hi, tz=rq.tz, interval=interval
            ),
            readonly=True,
        )
        return CorrelationResponse(
            source="database",
            metric1=c.metric1,
            metric2=c.metric2,
            interval=interval,
            timezone=rq.tz,
            range=RangeModel.model_validate(rq.range),
            r=c.r,
            n=c.n,
            p_value=c.p_value,
        )

    return await answer(
        request,
        state,
        principal,
        group="analytics",
        ttl_s=ttl_for(state, "analytics"),
        produce=produce,
    )
