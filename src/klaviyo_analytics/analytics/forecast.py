"""Daily forecasts of any metric (revenue = Placed Order sum, orders = its count), model chosen per series.

Candidates (see forecast_models): weekly seasonal naive, ETS(A,Ad,A) and SARIMA(p,1,q)(0,1,1)7.
With `model="auto"` each is scored by a rolling-origin backtest (up to 3 folds of 14 days, each
fold refitting on everything before it) and the lowest MAPE wins (MAE when some fold held only
zero days, where MAPE is undefined); ties go to the simpler model. The winner is refitted on the
whole history. The model, its predictions and every candidate's scores are stored. See
docs/forecasting.md.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any, Literal

import numpy as np

from klaviyo_analytics.analytics import periods
from klaviyo_analytics.analytics.compute import Offload, in_thread
from klaviyo_analytics.analytics.errors import (
    InvalidParameterError,
    ModelUnavailableError,
    SeriesTooShortError,
    UnknownMetricError,
)
from klaviyo_analytics.analytics.forecast_models import (
    FITTERS,
    MODEL_NAMES,
    Array,
    Prediction,
)
from klaviyo_analytics.analytics.timeseries import metric_series
from klaviyo_analytics.db.repos.base import Conn
from klaviyo_analytics.db.repos.forecasts import ForecastRepository, PredictionRow, ScoreRow
from klaviyo_analytics.db.repos.metrics import MetricRepository

logger = logging.getLogger(__name__)

MIN_HISTORY_DAYS = 28
MIN_TRAIN_DAYS = 21
MAX_FOLDS = 3
FOLD_DAYS = 14
MAX_HORIZON_DAYS = 365
MAX_HISTORY_DAYS = 3660
LEVEL_RANGE = (0.5, 0.99)
MAX_REFRESH_HORIZON_DAYS = 30
PLACED_ORDER = "Placed Order"


ModelChoice = Literal["auto", "seasonal_naive", "ets", "arima"]


@dataclass(frozen=True)
class ForecastOptions:
    """What a forecast is asked for: the measure, days ahead, interval level, model, history."""

    measure: Literal["count", "sum"] = "count"
    horizon_days: int = 30
    level: float = 0.95
    model: ModelChoice = "auto"
    history_days: int = 365

    def requested(self) -> dict[str, Any]:
        """Return what is stored with a forecast so later reads can find it."""
        return requested_options(self.model, self.history_days)


@dataclass(frozen=True)
class ForecastPoint:
    """One forecast day: the prediction and its interval at the forecast's level."""

    date: date
    predicted: float
    lower: float
    upper: float


@dataclass(frozen=True)
class ModelScore:
    """A model's backtest: MAPE in percent (None if every actual was 0), coverage in 0..1."""

    model_name: str
    mape: float | None
    rmse: float
    mae: float
    coverage: float
    folds: int


@dataclass(frozen=True)
class ValuesForecast:
    """The outcome of forecasting a bare array: the chosen model's prediction and all scores."""

    model_name: str
    prediction: Prediction
    backtest: list[ModelScore]
    seconds: float


@dataclass(frozen=True)
class Forecast:
    """A forecast of a metric's daily measure; `model_id` once it is stored, else None."""

    metric_id: str
    measure: str
    model_name: str
    level: float
    points: list[ForecastPoint]
    backtest: list[ModelScore]
    model_id: int | None
    train_start: date
    train_end: date
    parameters: dict[str, Any]


def check_options(horizon_days: int, level: float, model: str) -> None:
    """Check a forecast's horizon, interval level and model name.

    Raises InvalidParameterError naming the bad value and the accepted ones.
    """
    if not 1 <= horizon_days <= MAX_HORIZON_DAYS:
        raise InvalidParameterError(
            f"horizon_days must be between 1 and {MAX_HORIZON_DAYS}, not {horizon_days}"
        )
    if not LEVEL_RANGE[0] <= level <= LEVEL_RANGE[1]:
        raise InvalidParameterError(
            f"level must be between {LEVEL_RANGE[0]} and {LEVEL_RANGE[1]}, not {level}"
        )
    if model != "auto" and model not in MODEL_NAMES:
        raise InvalidParameterError(
            f"model must be auto or one of {', '.join(MODEL_NAMES)}, not {model!r}"
        )


def backtest(y: Array, model_name: str, level: float) -> ModelScore:
    """Score a model by rolling-origin backtest on `y` (at least MIN_HISTORY_DAYS long).

    Folds hold FOLD_DAYS days (7 when the series is short), as many as fit up to MAX_FOLDS
    while each training window keeps MIN_TRAIN_DAYS days.
    Raises ModelUnavailableError when the model cannot be fitted on some fold.
    """
    n = len(y)
    length = FOLD_DAYS if n >= MIN_TRAIN_DAYS + FOLD_DAYS else 7
    folds = max(1, min(MAX_FOLDS, (n - MIN_TRAIN_DAYS) // length))
    errors: list[Array] = []
    actuals: list[Array] = []
    covered = 0
    for k in range(folds):
        cut = n - (folds - k) * length
        actual = y[cut : cut + length]
        prediction = FITTERS[model_name](y[:cut], length, level)
        errors.append(actual - prediction.mean)
        actuals.append(actual)
        covered += int(np.sum((actual >= prediction.lower) & (actual <= prediction.upper)))
    err, act = np.concatenate(errors), np.concatenate(actuals)
    nonzero = act != 0
    mape = float(np.mean(np.abs(err[nonzero] / act[nonzero])) * 100) if nonzero.all() else None
    return ModelScore(
        model_name=model_name,
        mape=mape,
        rmse=float(np.sqrt(np.mean(err**2))),
        mae=float(np.mean(np.abs(err))),
        coverage=covered / len(act),
        folds=folds,
    )


def forecast_values(y: Array, *, horizon: int, level: float, model: str = "auto") -> ValuesForecast:
    """Choose a model for the daily series `y` by backtest (or take `model`) and forecast it.

    Raises InvalidParameterError for bad options, SeriesTooShortError for fewer than
    MIN_HISTORY_DAYS values, and ModelUnavailableError when a model named explicitly cannot be
    fitted to this series.
    """
    check_options(horizon, level, model)
    if len(y) < MIN_HISTORY_DAYS:
        raise SeriesTooShortError(
            f"{len(y)} days of history; forecasting needs at least {MIN_HISTORY_DAYS} (4 weeks)"
        )
    started = time.perf_counter()
    candidates = list(MODEL_NAMES) if model == "auto" else [model]
    scores: list[ModelScore] = []
    for name in candidates:
        try:
            scores.append(backtest(y, name, level))
        except ModelUnavailableError as exc:
            if model != "auto":
                raise
            logger.info("forecast model %s left out for this series: %s", name, exc)
    use_mape = all(s.mape is not None for s in scores)
    ranked = sorted(
        scores,
        key=lambda s: (
            s.mape if use_mape and s.mape is not None else s.mae,
            MODEL_NAMES.index(s.model_name),
        ),
    )
    for score in ranked:
        try:
            prediction = FITTERS[score.model_name](y, horizon, level)
        except ModelUnavailableError as exc:
            logger.info("forecast model %s failed on the full history: %s", score.model_name, exc)
            continue
        return ValuesForecast(score.model_name, prediction, scores, time.perf_counter() - started)
    # Seasonal naive fits whenever the backtest ran, so this is only reached when none did.
    raise ModelUnavailableError("no forecasting model could be fitted to this series")


@dataclass(frozen=True)
class History:
    """The daily history a forecast is fitted on: `y` from the first non-zero day on."""

    metric_id: str
    measure: str
    day: date
    train_start: date
    y: Array


def _check_request(measure: str, history_days: int) -> None:
    if measure not in ("count", "sum"):
        raise InvalidParameterError(f"measure must be count or sum, not {measure!r}")
    if not MIN_HISTORY_DAYS <= history_days <= MAX_HISTORY_DAYS:
        raise InvalidParameterError(
            f"history_days must be between {MIN_HISTORY_DAYS} and {MAX_HISTORY_DAYS}, "
            f"not {history_days}"
        )


async def read_history(
    conn: Conn,
    metric_id: str,
    *,
    tz: str,
    measure: Literal["count", "sum"] = "count",
    history_days: int = 365,
    today: date | None = None,
) -> History:
    """Read the `history_days` complete days before `today` (the store's date) of a metric.

    History starts at the metric's first non-zero day (leading zeros are before the metric
    existed, not a quiet season). Raises InvalidParameterError for bad options,
    UnknownMetricError for an unknown metric, SeriesTooShortError for less than 4 weeks.
    """
    _check_request(measure, history_days)
    day = today if today is not None else periods.local_today(tz)
    start, end = periods.DateRange(
        day - timedelta(days=history_days), day - timedelta(days=1)
    ).bounds(tz)
    series = await metric_series(conn, metric_id, start=start, end=end, tz=tz, measure=measure)
    values = np.asarray(series.values, dtype=float)
    first = int(np.flatnonzero(values)[0]) if values.any() else len(values)
    y = values[first:]
    if len(y) < MIN_HISTORY_DAYS:
        raise SeriesTooShortError(
            f"{metric_id} ({measure}) has {len(y)} days of history before {day}; "
            f"forecasting needs at least {MIN_HISTORY_DAYS} (4 weeks)"
        )
    return History(metric_id, measure, day, series.points[first].at.date(), y)


def requested_options(model: str, history_days: int) -> dict[str, Any]:
    """Return what a forecast was asked for, stored with it so later reads can find it."""
    return {"model": model, "history_days": history_days}


def fit_history(history: History, options: ForecastOptions) -> Forecast:
    """Fit and forecast `history` (CPU-bound: run it through an Offload); nothing is stored.

    Counts are clipped at 0; sums are not (refunds are legal). The result's model_id is None.
    Raises InvalidParameterError for bad options, ModelUnavailableError when an explicitly
    requested model cannot be fitted to this series.
    """
    horizon_days, level = options.horizon_days, options.level
    check_options(horizon_days, level, options.model)
    result = forecast_values(history.y, horizon=horizon_days, level=level, model=options.model)
    logger.info(
        "forecast %s %s: %s chosen from %d candidates in %.2fs",
        history.metric_id,
        history.measure,
        result.model_name,
        len(result.backtest),
        result.seconds,
    )
    p = result.prediction
    floor = 0.0 if history.measure == "count" else -np.inf
    points = [
        ForecastPoint(
            history.day + timedelta(days=i),
            float(max(p.mean[i], floor)),
            float(max(p.lower[i], floor)),
            float(max(p.upper[i], floor)),
        )
        for i in range(horizon_days)
    ]
    parameters = {
        **p.parameters,
        "history_days": len(history.y),
        "fit_seconds": round(result.seconds, 3),
        "requested": options.requested(),
    }
    return Forecast(
        metric_id=history.metric_id,
        measure=history.measure,
        model_name=result.model_name,
        level=level,
        points=points,
        backtest=result.backtest,
        model_id=None,
        train_start=history.train_start,
        train_end=history.day - timedelta(days=1),
        parameters=parameters,
    )


async def store_forecast(conn: Conn, fitted: Forecast) -> Forecast:
    """Write a fitted forecast's model, predictions and scores with `conn` (the caller commits).

    Return it with its new model_id.
    """
    repo = ForecastRepository()
    key = series_key(fitted.metric_id, fitted.measure)
    model_id = await repo.save_model(
        conn,
        series_key=key,
        model_name=fitted.model_name,
        parameters=fitted.parameters,
        train_start=fitted.train_start,
        train_end=fitted.train_end,
        horizon_days=len(fitted.points),
    )
    await repo.save_predictions(
        conn,
        model_id,
        [PredictionRow(pt.date, pt.predicted, pt.lower, pt.upper) for pt in fitted.points],
        level=fitted.level,
    )
    await repo.save_scores(
        conn,
        model_id,
        key,
        [
            ScoreRow(s.model_name, s.folds, s.mape, s.rmse, s.mae, s.coverage)
            for s in fitted.backtest
        ],
    )
    return replace(fitted, model_id=model_id)


async def stored_forecast(
    conn: Conn, metric_id: str, options: ForecastOptions, *, today: date
) -> Forecast | None:
    """Return the stored forecast fitted today for these options (read-only), if any."""
    found = await ForecastRepository().find_stored(
        conn,
        series_key=series_key(metric_id, options.measure),
        train_end=today - timedelta(days=1),
        requested=options.requested(),
        horizon_days=options.horizon_days,
        level=options.level,
    )
    if found is None:
        return None
    return Forecast(
        metric_id=metric_id,
        measure=options.measure,
        model_name=found.model_name,
        level=options.level,
        points=[ForecastPoint(r.date, r.predicted, r.lower, r.upper) for r in found.predictions],
        backtest=[
            ModelScore(s.model_name, s.mape, s.rmse, s.mae, s.coverage, s.folds)
            for s in found.scores
        ],
        model_id=found.model_id,
        train_start=found.train_start,
        train_end=found.train_end,
        parameters=found.parameters,
    )


async def forecast_metric(
    conn: Conn,
    metric_id: str,
    *,
    tz: str,
    measure: Literal["count", "sum"] = "count",
    horizon_days: int = 30,
    level: float = 0.95,
    model: ModelChoice = "auto",
    history_days: int = 365,
    today: date | None = None,
    offload: Offload = in_thread,
) -> Forecast:
    """Forecast a metric's daily count or sum from `today` (the store's date) and store it.

    Reads the history (read_history), fits it through `offload` (fit_history; a worker thread
    by default) and writes the model, predictions and backtest scores with `conn` (the caller
    commits). Raises what read_history and fit_history raise.
    """
    options = ForecastOptions(measure, horizon_days, level, model, history_days)
    return await _fit_and_store(conn, metric_id, options, tz=tz, today=today, offload=offload)


async def _fit_and_store(
    conn: Conn,
    metric_id: str,
    options: ForecastOptions,
    *,
    tz: str,
    today: date | None,
    offload: Offload,
) -> Forecast:
    check_options(options.horizon_days, options.level, options.model)
    history = await read_history(
        conn,
        metric_id,
        tz=tz,
        measure=options.measure,
        history_days=options.history_days,
        today=today,
    )
    return await store_forecast(conn, await offload(fit_history, history, options))


# What the scheduler's refresh always fits (the dashboard's revenue forecast reads the sum).
DEFAULT_REFRESH = ForecastOptions(horizon_days=MAX_REFRESH_HORIZON_DAYS)
# A stored forecast asked for within this many days is fitted again by each refresh.
REFRESH_REQUESTS_DAYS = 30


@dataclass(frozen=True)
class RefreshOutcome:
    """What one refresh did: forecasts fitted, ones already fitted today, ones that failed."""

    fitted: int
    current: int
    failed: dict[str, str]


async def refresh_forecasts(
    conn: Conn, *, tz: str, today: date, offload: Offload = in_thread
) -> RefreshOutcome:
    """Fit and store today's forecasts: Placed Order's revenue and orders with the default
    options, and every option set stored in the last REFRESH_REQUESTS_DAYS days.

    A series that cannot be forecast (too short, no model fits, no longer synced) is reported
    in `failed` by its key and the others go on; the caller commits. GETs then read these
    instead of fitting on request.
    """
    wanted: list[tuple[str, ForecastOptions]] = []
    try:
        placed = await placed_order_metric(conn)
    except UnknownMetricError:
        placed = None
    if placed is not None:
        wanted.append((placed, replace(DEFAULT_REFRESH, measure="sum")))
        wanted.append((placed, replace(DEFAULT_REFRESH, measure="count")))
    failed: dict[str, str] = {}
    since = today - timedelta(days=REFRESH_REQUESTS_DAYS)
    for r in await ForecastRepository().recent_requests(conn, trained_since=since):
        parsed = parse_series_key(r.series_key)
        model, history_days = r.requested.get("model"), r.requested.get("history_days")
        if parsed is None or model not in ("auto", *MODEL_NAMES):
            continue  # not a forecast this module stored
        if not isinstance(history_days, int):
            continue
        metric_id, measure = parsed
        horizon = min(r.horizon_days, MAX_HORIZON_DAYS)
        wanted.append((metric_id, ForecastOptions(measure, horizon, r.level, model, history_days)))
    fitted = current = 0
    for metric_id, options in dict.fromkeys(wanted):
        if await stored_forecast(conn, metric_id, options, today=today) is not None:
            current += 1
            continue
        key = f"{series_key(metric_id, options.measure)} {options}"
        try:
            await _fit_and_store(conn, metric_id, options, tz=tz, today=today, offload=offload)
        except (
            SeriesTooShortError,
            ModelUnavailableError,
            InvalidParameterError,
            UnknownMetricError,
        ) as exc:
            failed[key] = str(exc)
            logger.info("forecast of %s not refreshed: %s", key, exc)
            continue
        fitted += 1
    return RefreshOutcome(fitted, current, failed)


def parse_series_key(key: str) -> tuple[str, Literal["count", "sum"]] | None:
    """Return (metric id, measure) of a key series_key made, or None for any other key."""
    parts = key.split(":")
    if len(parts) != 4 or parts[0] != "metric" or parts[3] != "day":
        return None
    if parts[2] == "count":
        return parts[1], "count"
    if parts[2] == "sum":
        return parts[1], "sum"
    return None


def series_key(metric_id: str, measure: str) -> str:
    """Return the key a metric's daily measure is stored under in the forecast tables."""
    return f"metric:{metric_id}:{measure}:day"


async def placed_order_metric(conn: Conn) -> str:
    """Return the id of the (oldest) "Placed Order" metric.

    Raises UnknownMetricError when the account has none.
    """
    found = await MetricRepository().find_by_name(conn, PLACED_ORDER)
    if not found:
        raise UnknownMetricError(f"no {PLACED_ORDER!r} metric has been synced")
    return found[0].id


async def forecast_revenue(conn: Conn, *, tz: str, **options: Any) -> Forecast:
    """Forecast daily revenue (the Placed Order sum); options as for forecast_metric.

    Raises what placed_order_metric and forecast_metric raise.
    """
    return await forecast_metric(
        conn, await placed_order_metric(conn), tz=tz, measure="sum", **options
    )


async def forecast_orders(conn: Conn, *, tz: str, **options: Any) -> Forecast:
    """Forecast daily orders (the Placed Order count); options as for forecast_metric.

    Raises what placed_order_metric and forecast_metric raise.
    """
    return await forecast_metric(
        conn, await placed_order_metric(conn), tz=tz, measure="count", **options
    )
