"""The forecasting models: weekly seasonal naive, damped ETS and seasonal ARIMA, fitted on one series.

Each model takes a daily series (numpy, oldest first) and returns a point forecast with a
prediction interval at the requested level, or raises ModelUnavailableError when it cannot be
fitted to that series (too short for it, failed to converge, non-finite output). The forecast
module then simply leaves the model out; nothing here guesses.

statsmodels warns a lot, and the test suite turns warnings into errors. Every fit therefore runs
inside `warnings.catch_warnings(record=True)`: a ConvergenceWarning makes the model unavailable,
any other warning (start-parameter notices and the like) is logged at debug level. The warnings
filter is process-global in Python 3.11, so fits are serialised by a lock: two fits running at
once in threads would otherwise reset each other's filters.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from statsmodels.tools.sm_exceptions import ConvergenceWarning
from statsmodels.tsa.arima.model import ARIMA
from statsmodels.tsa.exponential_smoothing.ets import ETSModel

from klaviyo_analytics.analytics.errors import ModelUnavailableError

logger = logging.getLogger(__name__)

ModelName = Literal["seasonal_naive", "ets", "arima"]
MODEL_NAMES: tuple[ModelName, ...] = ("seasonal_naive", "ets", "arima")
SEASON = 7
ETS_MAXITER = 1000
ARIMA_MAXITER = 50
# (p, d, q) candidates, each with a seasonal (0, 1, 1, 7) part; the lower AIC wins.
ARIMA_ORDERS: tuple[tuple[int, int, int], ...] = ((0, 1, 1), (1, 1, 1))
# SARIMA fits cost grows with length while a weekly model gains little from more than half a
# year (and the differencing forgets older levels anyway): fit on the last 26 weeks at most.
ARIMA_MAX_DAYS = 182

Array = npt.NDArray[np.float64]
_FIT_LOCK = threading.Lock()


@dataclass(frozen=True)
class Prediction:
    """A model's forecast for the next `len(mean)` days, with its interval at one level."""

    model_name: str
    mean: Array
    lower: Array
    upper: Array
    parameters: dict[str, Any] = field(default_factory=dict)


@contextmanager
def _guarded(model: str) -> Iterator[None]:
    with _FIT_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except (ValueError, np.linalg.LinAlgError) as exc:
            raise ModelUnavailableError(f"{model} could not be fitted: {exc}") from exc
    for warning in caught:
        if issubclass(warning.category, ConvergenceWarning):
            raise ModelUnavailableError(f"{model} did not converge: {warning.message}")
        logger.debug("%s: %s: %s", model, warning.category.__name__, warning.message)


def _z(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + level / 2)


def _finite(prediction: Prediction) -> Prediction:
    arrays = (prediction.mean, prediction.lower, prediction.upper)
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise ModelUnavailableError(f"{prediction.model_name} produced non-finite forecasts")
    return prediction


def _scaled(y: Array) -> tuple[Array, float, float]:
    # ETS and ARIMA are linear in the data: fitting on a standardised copy and scaling back is
    # exact, and it spares the optimisers revenue figures in the hundreds of thousands.
    centre, scale = float(np.mean(y)), float(np.std(y))
    if scale == 0.0:
        raise ModelUnavailableError("the series is constant")
    return (y - centre) / scale, centre, scale


def seasonal_naive(y: Array, horizon: int, level: float) -> Prediction:
    """Forecast each day as the same weekday of the last observed week.

    The interval is the normal approximation of Hyndman & Athanasopoulos (FPP3, 5.5): with
    sigma the root mean square of the one-season-ahead residuals y[t] - y[t-7], the h-step
    standard deviation is sigma * sqrt(k + 1), k the number of whole weeks before step h.
    Raises ModelUnavailableError for fewer than two weeks of data.
    """
    n = len(y)
    if n < 2 * SEASON:
        raise ModelUnavailableError("seasonal naive needs at least two weeks")
    steps = np.arange(horizon)
    mean = y[n - SEASON + steps % SEASON].astype(float)
    residuals = y[SEASON:] - y[:-SEASON]
    sigma = float(np.sqrt(np.mean(residuals**2)))
    half = _z(level) * sigma * np.sqrt(steps // SEASON + 1)
    return _finite(Prediction("seasonal_naive", mean, mean - half, mean + half, {"sigma": sigma}))


def ets(y: Array, horizon: int, level: float) -> Prediction:
    """Fit ETS(A,Ad,A): additive errors, damped additive trend, additive weekly season.

    Intervals are statsmodels' analytic ones for this (class 1) model.
    Raises ModelUnavailableError when the fit fails or does not converge.
    """
    if len(y) < 3 * SEASON:
        raise ModelUnavailableError("ets needs at least three weeks")
    z, centre, scale = _scaled(y)
    series = pd.Series(z, index=pd.date_range("2000-01-03", periods=len(z), freq="D"))
    with _guarded("ets"):
        model = ETSModel(
            series,
            error="add",
            trend="add",
            damped_trend=True,
            seasonal="add",
            seasonal_periods=SEASON,
        )
        fit = model.fit(disp=False, maxiter=ETS_MAXITER)
        frame = fit.get_prediction(start=len(z), end=len(z) + horizon - 1).summary_frame(
            alpha=1 - level
        )
    params = {name: float(v) for name, v in zip(fit.param_names, fit.params, strict=True)}
    return _finite(
        Prediction(
            "ets",
            frame["mean"].to_numpy(dtype=float) * scale + centre,
            frame["pi_lower"].to_numpy(dtype=float) * scale + centre,
            frame["pi_upper"].to_numpy(dtype=float) * scale + centre,
            {"spec": "ETS(A,Ad,A) period 7", "aic": float(fit.aic), "params": params},
        )
    )


def arima(y: Array, horizon: int, level: float) -> Prediction:
    """Fit SARIMA(p,1,q)(0,1,1)7 for each order in ARIMA_ORDERS and forecast with the lowest AIC.

    Only the last ARIMA_MAX_DAYS days are used.
    Intervals come from the state-space model's forecast variance.
    Raises ModelUnavailableError when no order can be fitted.
    """
    if len(y) < 3 * SEASON:
        raise ModelUnavailableError("arima needs at least three weeks")
    z, centre, scale = _scaled(y[-ARIMA_MAX_DAYS:])
    best: tuple[float, tuple[int, int, int], Any] | None = None
    reasons: list[str] = []
    for order in ARIMA_ORDERS:
        try:
            with _guarded(f"arima{order}"):
                fit = ARIMA(z, order=order, seasonal_order=(0, 1, 1, SEASON)).fit(
                    method_kwargs={"maxiter": ARIMA_MAXITER}
                )
                forecast = fit.get_forecast(horizon)
                interval = np.asarray(forecast.conf_int(alpha=1 - level), dtype=float)
                result = (np.asarray(forecast.predicted_mean, dtype=float), interval)
        except ModelUnavailableError as exc:
            reasons.append(str(exc))
            continue
        if best is None or float(fit.aic) < best[0]:
            best = (float(fit.aic), order, (fit, result))
    if best is None:
        raise ModelUnavailableError("; ".join(reasons))
    aic, order, (fit, (mean, interval)) = best
    params = {name: float(v) for name, v in zip(fit.param_names, fit.params, strict=True)}
    return _finite(
        Prediction(
            "arima",
            mean * scale + centre,
            interval[:, 0] * scale + centre,
            interval[:, 1] * scale + centre,
            {"spec": f"SARIMA{order}(0,1,1)7", "aic": aic, "params": params},
        )
    )


FITTERS: dict[str, Callable[[Array, int, float], Prediction]] = {
    "seasonal_naive": seasonal_naive,
    "ets": ets,
    "arima": arima,
}
