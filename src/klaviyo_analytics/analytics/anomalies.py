"""Anomalous days of a metric: STL with flagged days imputed, residuals scored on a robust noise scale.

The rule (docs/forecasting.md has the reasoning and the measured error rates):

1. Noise scale: sigma = 1.4826 * MAD(y[t] - y[t-7]) / sqrt(2). Week-over-week differences
   cancel the weekly pattern and almost all of the trend, and the median absolute deviation
   ignores the few differences an anomaly touches. (When more than half of them are equal, the
   mean absolute deviation * 1.2533 stands in; when that is 0 too, nothing is anomalous.)
2. Expected value: STL (weekly period, seasonal window 13) gives trend + season. The score of a
   day is (residual - median residual) / sigma, a z-score.
3. Iterate: the day with the largest |score| above the threshold is flagged and its value
   replaced by its expected value, and STL is fitted again, so a big spike neither drags the
   trend (and flags its neighbours as drops) nor hides a smaller anomaly. At most a quarter of
   the days can be flagged. A few extra refits let the imputed values settle.

We do not score STL's own residuals with their MAD: with a few weeks of data STL (robust or
not) fits most days almost exactly, so that scale is far too small and ordinary days get flagged.
The default threshold, 3.5, is Iglewicz & Hoaglin's for modified z-scores.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

import numpy as np
from statsmodels.tsa.seasonal import STL

from klaviyo_analytics.analytics.compute import Offload, in_thread
from klaviyo_analytics.analytics.errors import InvalidParameterError, SeriesTooShortError
from klaviyo_analytics.analytics.forecast_models import Array
from klaviyo_analytics.analytics.timeseries import metric_series
from klaviyo_analytics.db.repos.anomalies import AnomalyRepository, AnomalyRow
from klaviyo_analytics.db.repos.base import Conn

logger = logging.getLogger(__name__)

PERIOD = 7
SEASONAL_WINDOW = 13
MAD_TO_SIGMA = 1.4826  # 1 / the 0.75 quantile of the standard normal
MEAN_AD_TO_SIGMA = 1.2533  # sqrt(pi / 2)
SETTLE_ROUNDS = 3


@dataclass(frozen=True)
class Anomaly:
    """A day whose value is far from what its trend and weekday lead to expect."""

    metric_id: str
    date: date
    observed: float
    expected: float
    score: float
    direction: Literal["spike", "drop"]


def noise_sigma(values: Array) -> float:
    """Estimate the day-to-day noise's standard deviation from week-over-week differences."""
    diffs = values[PERIOD:] - values[:-PERIOD]
    centred = np.abs(diffs - np.median(diffs))
    mad = float(np.median(centred))
    if mad > 0:
        return MAD_TO_SIGMA * mad / math.sqrt(2)
    return MEAN_AD_TO_SIGMA * float(np.mean(centred)) / math.sqrt(2)


def _expected(values: Array) -> Array:
    fit = STL(values, period=PERIOD, seasonal=SEASONAL_WINDOW).fit()
    expected: Array = np.asarray(fit.trend + fit.seasonal, dtype=float)
    return expected


def _scores(values: Array, expected: Array, flagged: list[int], sigma: float) -> Array:
    residuals = values - expected
    centre = float(np.median(np.delete(residuals, flagged)))
    scores: Array = (residuals - centre) / sigma
    return scores


def score_days(values: Sequence[float] | Array, threshold: float) -> tuple[Array, Array]:
    """Return (expected values, z-scores) of a daily series by the iterative rule of this module.

    Raises SeriesTooShortError for fewer than two full weeks.
    """
    y = np.asarray(values, dtype=float)
    if len(y) < 2 * PERIOD:
        raise SeriesTooShortError(
            f"{len(y)} days; anomaly detection needs at least {2 * PERIOD} (two full weeks)"
        )
    sigma = noise_sigma(y)
    expected = _expected(y)
    if sigma == 0:
        return expected, np.zeros_like(y)
    clean = y.copy()
    flagged: list[int] = []
    while len(flagged) < len(y) // 4:
        scores = np.abs(_scores(y, expected, flagged, sigma))
        scores[flagged] = 0.0
        worst = int(np.argmax(scores))
        if scores[worst] <= threshold:
            break
        flagged.append(worst)
        clean[flagged] = expected[flagged]
        expected = _expected(clean)
    for _ in range(SETTLE_ROUNDS if flagged else 0):
        clean[flagged] = expected[flagged]
        expected = _expected(clean)
    return expected, _scores(y, expected, flagged, sigma)


async def detect_anomalies(
    conn: Conn,
    metric_id: str,
    *,
    start: datetime,
    end: datetime,
    tz: str,
    measure: Literal["count", "sum"] = "count",
    threshold: float = 3.5,
    store: bool = True,
    offload: Offload = in_thread,
) -> list[Anomaly]:
    """Return the anomalous days of a metric's daily count or sum over [start, end), oldest first.

    With `store`, the stored anomalies of the examined days become exactly these (re-detection
    upserts, and days no longer flagged are removed); the caller commits.
    Raises InvalidParameterError for a threshold <= 0, an unknown measure or what metric_series
    refuses; UnknownMetricError for an unknown metric; SeriesTooShortError for fewer than 14 days
    (STL needs two full weeks). The scoring runs through `offload` (a worker thread by default;
    the API passes its worker processes).
    """
    if not threshold > 0:
        raise InvalidParameterError(f"threshold must be positive, not {threshold}")
    if measure not in ("count", "sum"):
        raise InvalidParameterError(f"measure must be count or sum, not {measure!r}")
    series = await metric_series(
        conn, metric_id, start=start, end=end, tz=tz, interval="day", measure=measure
    )
    if len(series.points) < 2 * PERIOD:
        raise SeriesTooShortError(
            f"{metric_id} has {len(series.points)} days in the range; anomaly detection needs "
            f"at least {2 * PERIOD} (two full weeks)"
        )
    expected, scores = await offload(score_days, series.values, threshold)
    found: list[Anomaly] = []
    for i, point in enumerate(series.points):
        score = float(scores[i])
        if abs(score) > threshold:
            found.append(
                Anomaly(
                    metric_id=metric_id,
                    date=point.at.date(),
                    observed=point.value,
                    expected=float(expected[i]),
                    score=score,
                    direction="spike" if score > 0 else "drop",
                )
            )
    logger.info(
        "anomalies of %s %s over %d days: %d flagged at |z| > %g",
        metric_id,
        measure,
        len(series.points),
        len(found),
        threshold,
    )
    if store:
        await AnomalyRepository().replace(
            conn,
            metric_id,
            measure,
            series.points[0].at.date(),
            series.points[-1].at.date(),
            [
                AnomalyRow(
                    a.metric_id,
                    measure,
                    a.date,
                    a.observed,
                    a.expected,
                    a.score,
                    a.direction,
                    threshold,
                )
                for a in found
            ],
        )
    return found
