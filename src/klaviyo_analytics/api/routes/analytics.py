"""Analytics of one metric: time series, decomposition, correlation, anomalies, forecasts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from klaviyo_analytics.analytics import anomalies, forecast, timeseries
from klaviyo_analytics.analytics.periods import local_today
from klaviyo_analytics.api.auth import Principal
from klaviyo_analytics.api.deps import (
    ID_PATTERN,
    Admin,
    AppState,
    Caller,
    KnownQuery,
    Range,
    State,
    answer,
    audit,
    ttl_for,
)
from klaviyo_analytics.api.errors import InvalidQueryError
from klaviyo_analytics.api.models import ERROR_RESPONSES, RangeModel, Sourced

router = APIRouter(
    prefix="/api/analytics",
    tags=["analytics"],
    responses=ERROR_RESPONSES,
    dependencies=[KnownQuery],
)

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


# STL's cost grows with points x period (~20 us per unit here); these keep one fit under ~3 s.
MAX_DECOMPOSITION_POINTS = 20_000
MAX_DECOMPOSITION_WORK = 150_000
# The iterative anomaly scan refits STL per flagged day; two years keep it under ~4 s.
MAX_ANOMALY_DAYS = 731
# Forecast fits on request (not stored) are bounded by the history they read.
MAX_REQUEST_HISTORY_DAYS = 730
NOMINAL = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}


def _check_decomposition(points: int, period: int) -> None:
    """Refuse a decomposition whose size would hold a worker for too long.

    Raises InvalidQueryError (422) naming the limit.
    """
    if points > MAX_DECOMPOSITION_POINTS:
        raise InvalidQueryError(
            "range",
            f"the range holds {points} buckets; a decomposition takes at most "
            f"{MAX_DECOMPOSITION_POINTS} (use a shorter range or a wider interval)",
        )
    if points * period > MAX_DECOMPOSITION_WORK:
        raise InvalidQueryError(
            "period",
            f"{points} buckets x period {period} exceeds the limit of "
            f"{MAX_DECOMPOSITION_WORK} (points times period); use a shorter range or a "
            f"smaller period",
        )


def _points(points: list[timeseries.Point]) -> list[PointModel]:
    # Built unvalidated: they come from the database typed, and validating 20,000 of them
    # would hold the event loop for ~0.2 s.
    return [PointModel.model_construct(at=p.at, value=p.value) for p in points]


def _answer(
    request: Request,
    state: AppState,
    principal: Principal,
    produce: Callable[[], Awaitable[Sourced]],
) -> Awaitable[Response]:
    """Answer from the analytics cache group, producing the response on a miss."""
    return answer(
        request,
        state,
        principal,
        group="analytics",
        ttl_s=ttl_for(state, "analytics"),
        produce=produce,
    )


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

    return await _answer(request, state, principal, produce)


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
    """Decompose the metric's series; 422 under two periods or over the size limits."""
    lo, hi = rq.range.bounds(rq.tz)
    # Buckets are whole, so a range may touch one more than its length in buckets.
    _check_decomposition(int((hi - lo) / NOMINAL[interval]), period)

    async def produce() -> DecompositionResponse:
        s = await state.db.run(
            lambda c: timeseries.metric_series(
                c, metric_id, start=lo, end=hi, tz=rq.tz, interval=interval, measure=measure
            ),
            readonly=True,
        )
        _check_decomposition(len(s.points), period)
        timeseries.check_decomposable(s, period)
        trend, seasonal, residual = await state.workers(timeseries.stl_parts, s.values, period)
        return DecompositionResponse(
            source="database",
            metric_id=metric_id,
            interval=interval,
            measure=measure,
            timezone=rq.tz,
            range=RangeModel.model_validate(rq.range),
            period=period,
            points=_points(s.points),
            trend=trend,
            seasonal=seasonal,
            residual=residual,
        )

    return await _answer(request, state, principal, produce)


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

    return await _answer(request, state, principal, produce)


class AnomalyModel(BaseModel):
    """A day whose value lies far from what trend and weekly season predict."""

    date: date
    observed: float
    expected: float
    score: float = Field(description="robust z-score of the residual")
    direction: Literal["spike", "drop"]


class AnomaliesResponse(Sourced):
    """The anomalous days of the range, oldest first."""

    metric_id: str
    measure: str
    threshold: float
    timezone: str
    range: RangeModel
    anomalies: list[AnomalyModel]


class ForecastPointModel(BaseModel):
    """One forecast day with its prediction interval."""

    date: date
    predicted: float
    lower: float
    upper: float


class ModelScoreModel(BaseModel):
    """How a candidate model did in the rolling-origin backtest."""

    model_name: str
    mape: float | None
    rmse: float
    mae: float
    coverage: float
    folds: int


class ForecastResponse(Sourced):
    """Daily forecast from the store's today, with the chosen model and the backtest."""

    metric_id: str
    measure: str
    timezone: str
    model_name: str
    model_id: int | None = Field(description="the stored model's id; null when fitted on request")
    stored: bool = Field(description="whether this forecast was read from the forecast tables")
    level: float
    train_start: date
    train_end: date
    points: list[ForecastPointModel]
    backtest: list[ModelScoreModel]


@router.get(
    "/anomalies/{metric_id}",
    response_model=AnomaliesResponse,
    summary="Anomalous days of a metric",
    responses=NOT_FOUND,
)
async def anomalies_of(
    request: Request,
    state: State,
    principal: Caller,
    rq: Range,
    metric_id: MetricId,
    measure: Literal["count", "sum"] = "count",
    threshold: Annotated[
        float, Query(gt=0, le=100, allow_inf_nan=False, description="score that flags a day")
    ] = 3.5,
) -> Response:
    """Detect anomalous days in the range (read-only: nothing is stored); 422 under two weeks
    or over MAX_ANOMALY_DAYS."""
    if rq.range.days > MAX_ANOMALY_DAYS:
        raise InvalidQueryError(
            "range",
            f"the range holds {rq.range.days} days; an anomaly scan takes at most "
            f"{MAX_ANOMALY_DAYS}",
        )
    lo, hi = rq.range.bounds(rq.tz)

    async def produce() -> AnomaliesResponse:
        found = await state.db.run(
            lambda c: anomalies.detect_anomalies(
                c,
                metric_id,
                start=lo,
                end=hi,
                tz=rq.tz,
                measure=measure,
                threshold=threshold,
                store=False,
                offload=state.workers,
            ),
            readonly=True,
        )
        return AnomaliesResponse(
            source="database",
            metric_id=metric_id,
            measure=measure,
            threshold=threshold,
            timezone=rq.tz,
            range=RangeModel.model_validate(rq.range),
            anomalies=[
                AnomalyModel(
                    date=a.date,
                    observed=a.observed,
                    expected=a.expected,
                    score=a.score,
                    direction=a.direction,
                )
                for a in found
            ],
        )

    return await _answer(request, state, principal, produce)


ForecastModel = Literal["auto", "seasonal_naive", "ets", "arima"]
Horizon = Annotated[int, Query(ge=1, le=forecast.MAX_HORIZON_DAYS, description="days")]
Level = Annotated[
    float,
    Query(
        ge=forecast.LEVEL_RANGE[0],
        le=forecast.LEVEL_RANGE[1],
        allow_inf_nan=False,
        description="prediction interval level",
    ),
]
HistoryDays = Annotated[
    int,
    Query(
        ge=forecast.MIN_HISTORY_DAYS,
        le=forecast.MAX_HISTORY_DAYS,
        description=f"days of history (over {MAX_REQUEST_HISTORY_DAYS} only for stored forecasts)",
    ),
]


def forecast_options(
    horizon: Horizon = 30,
    level: Level = 0.95,
    model: ForecastModel = "auto",
    measure: Literal["count", "sum"] = "count",
    history_days: HistoryDays = 365,
) -> forecast.ForecastOptions:
    """Read a forecast's options from the query (each validated, 422 otherwise)."""
    return forecast.ForecastOptions(measure, horizon, level, model, history_days)


Options = Annotated[forecast.ForecastOptions, Depends(forecast_options)]


def _forecast_body(f: forecast.Forecast, tz: str) -> ForecastResponse:
    return ForecastResponse(
        source="database",
        metric_id=f.metric_id,
        measure=f.measure,
        timezone=tz,
        model_name=f.model_name,
        model_id=f.model_id,
        stored=f.model_id is not None,
        level=f.level,
        train_start=f.train_start,
        train_end=f.train_end,
        points=[
            ForecastPointModel(date=p.date, predicted=p.predicted, lower=p.lower, upper=p.upper)
            for p in f.points
        ],
        backtest=[
            ModelScoreModel(
                model_name=s.model_name,
                mape=s.mape,
                rmse=s.rmse,
                mae=s.mae,
                coverage=s.coverage,
                folds=s.folds,
            )
            for s in f.backtest
        ],
    )


async def _fit(
    state: AppState, metric_id: str, options: forecast.ForecastOptions, *, tz: str, today: date
) -> forecast.Forecast:
    """Read the history (read-only) and fit it in a worker process; nothing is written."""
    history = await state.db.run(
        lambda c: forecast.read_history(
            c,
            metric_id,
            tz=tz,
            measure=options.measure,
            history_days=options.history_days,
            today=today,
        ),
        readonly=True,
    )
    return await state.workers(forecast.fit_history, history, options)


@router.get(
    "/forecast/{metric_id}",
    response_model=ForecastResponse,
    summary="Forecast a metric's daily count or sum",
    responses=NOT_FOUND,
)
async def forecast_of(
    request: Request, state: State, principal: Caller, metric_id: MetricId, options: Options
) -> Response:
    """Return today's stored forecast for these options, else fit one without storing it.

    Read-only: forecasts are stored by the scheduler's forecasts job or an admin's POST to this
    path. `auto` picks the model with the best backtest. 422 with less than four weeks of
    history, or history_days over MAX_REQUEST_HISTORY_DAYS when nothing is stored for them.
    """
    tz = await state.timezone()
    today = local_today(tz, state.clock())

    async def produce() -> ForecastResponse:
        found = await state.db.run(
            lambda c: forecast.stored_forecast(c, metric_id, options, today=today),
            readonly=True,
        )
        if found is None:
            if options.history_days > MAX_REQUEST_HISTORY_DAYS:
                raise InvalidQueryError(
                    "history_days",
                    f"no forecast is stored for {options.history_days} days of history, and "
                    f"one fitted on request reads at most {MAX_REQUEST_HISTORY_DAYS}",
                )
            found = await _fit(state, metric_id, options, tz=tz, today=today)
        return _forecast_body(found, tz)

    return await answer(
        request,
        state,
        principal,
        group="forecast",
        ttl_s=ttl_for(state, "forecast"),
        produce=produce,
    )


@router.post(
    "/forecast/{metric_id}",
    response_model=ForecastResponse,
    summary="Fit and store a metric's forecast (admin)",
    responses=NOT_FOUND,
)
async def store_forecast_of(
    state: State, principal: Admin, metric_id: MetricId, options: Options
) -> ForecastResponse:
    """Fit today's forecast for these options and store it (admin); GETs then read it."""
    tz = await state.timezone()
    today = local_today(tz, state.clock())
    fitted = await _fit(state, metric_id, options, tz=tz, today=today)
    stored = await state.db.run(lambda c: forecast.store_forecast(c, fitted))
    await state.cache.invalidate({"forecast"})
    await audit(
        state,
        principal,
        "forecast.store",
        {"metric_id": metric_id, "measure": options.measure, "model_id": stored.model_id},
    )
    return _forecast_body(stored, tz)
