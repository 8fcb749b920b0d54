"""Metric time series from the exact pre-aggregates: gap-filled, downsampled, decomposed, correlated.

Every series is read from `klaviyo_aggregated_metrics` (exact by the data-model rules) over a
bucket grid generated in the store's zone, so a bucket without events is a zero, not a hole, and
DST days have 23 or 25 hourly buckets. Long series can be reduced for charts with LTTB
(Largest-Triangle-Three-Buckets), which keeps the visual shape: peaks and troughs survive.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, get_args

import numpy as np
from scipy import stats
from statsmodels.tsa.seasonal import STL

from klaviyo_analytics.analytics import periods
from klaviyo_analytics.analytics.errors import (
    InvalidParameterError,
    SeriesTooShortError,
    UnknownMetricError,
)
from klaviyo_analytics.db.repos.base import Conn
from klaviyo_analytics.db.repos.metrics import MetricRepository
from klaviyo_analytics.db.repos.series import FilledBucket, SeriesRepository

logger = logging.getLogger(__name__)

Interval = Literal["hour", "day", "week"]
Measure = Literal["count", "sum", "unique"]
INTERVALS: tuple[Interval, ...] = get_args(Interval)
MEASURES: tuple[Measure, ...] = get_args(Measure)

# A guard against accidental huge reads (hourly buckets over a decade); ~11 years of hours.
MAX_BUCKETS = 100_000
_NOMINAL = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}


@dataclass(frozen=True)
class Point:
    """One bucket: its start (aware, in the store's zone) and its value.

    Two starts of a fall-back day share a wall clock (01:00 twice) and differ only in their
    offset; compare instants (`at.timestamp()`, or after `astimezone(UTC)`), since Python
    compares datetimes of one zone by wall clock.
    """

    at: datetime
    value: float


@dataclass(frozen=True)
class Series:
    """A metric's values per bucket, oldest first; `downsampled` when LTTB reduced it."""

    metric_id: str
    interval: str
    measure: str
    points: list[Point]
    downsampled: bool
    timezone: str = "UTC"

    @property
    def values(self) -> list[float]:
        """Return the values alone, in time order."""
        return [p.value for p in self.points]


@dataclass(frozen=True)
class Decomposition:
    """STL components aligned with the series' points: value = trend + seasonal + residual."""

    points: list[Point]
    trend: list[float]
    seasonal: list[float]
    residual: list[float]
    period: int


@dataclass(frozen=True)
class Correlation:
    """Pearson's r of two metrics over aligned buckets; None where it is undefined."""

    metric1: str
    metric2: str
    r: float | None
    n: int
    p_value: float | None


def check_range(start: datetime, end: datetime) -> None:
    """Check that [start, end) is a non-empty range of aware instants.

    Raises InvalidParameterError otherwise.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidParameterError("start and end must be timezone-aware datetimes")
    if start >= end:
        raise InvalidParameterError(
            f"start {start.isoformat()} is not before end {end.isoformat()}"
        )


async def ensure_metric(conn: Conn, metric_id: str) -> None:
    """Check that `metric_id` names a synced metric.

    Raises UnknownMetricError when it does not.
    """
    if await MetricRepository().get(conn, metric_id) is None:
        raise UnknownMetricError(f"unknown metric {metric_id!r}: it is not in klaviyo_metrics")


async def metric_series(
    conn: Conn,
    metric_id: str,
    *,
    start: datetime,
    end: datetime,
    tz: str,
    interval: Literal["hour", "day", "week"] = "day",
    measure: Literal["count", "sum", "unique"] = "count",
    max_points: int | None = None,
) -> Series:
    """Return a metric's series over every bucket overlapping [start, end) in the zone `tz`.

    Buckets are whole: a range starting mid-week gives a first weekly bucket that starts on the
    Monday before. `unique` is the number of distinct profiles within each bucket. With
    `max_points`, a longer series is reduced with LTTB and marked `downsampled`.
    Raises InvalidParameterError for an unknown interval, measure or zone, naive or empty
    bounds, max_points < 3 or a range of more than MAX_BUCKETS buckets; UnknownMetricError for a
    metric id not in klaviyo_metrics.
    """
    if interval not in INTERVALS:
        raise InvalidParameterError(
            f"interval must be one of {', '.join(INTERVALS)}, not {interval!r}"
        )
    if measure not in MEASURES:
        raise InvalidParameterError(
            f"measure must be one of {', '.join(MEASURES)}, not {measure!r}"
        )
    if max_points is not None and max_points < 3:
        raise InvalidParameterError(f"max_points must be at least 3, not {max_points}")
    zone = periods.zone(tz)
    check_range(start, end)
    if (end - start) / _NOMINAL[interval] > MAX_BUCKETS:
        raise InvalidParameterError(
            f"the range holds more than {MAX_BUCKETS} {interval} buckets; use a wider interval"
        )
    await ensure_metric(conn, metric_id)
    buckets = await SeriesRepository().filled(
        conn, metric_id, interval, start=start, end=end, timezone=tz
    )
    points = [Point(b.bucket_start.astimezone(zone), _measure_of(b, measure)) for b in buckets]
    downsampled = max_points is not None and len(points) > max_points
    if max_points is not None and downsampled:
        points = lttb(points, max_points)
    return Series(metric_id, interval, measure, points, downsampled, tz)


def _measure_of(bucket: FilledBucket, measure: Measure) -> float:
    if measure == "count":
        return float(bucket.count)
    if measure == "sum":
        return float(bucket.sum_value)
    return float(bucket.unique_profiles)


def lttb(points: Sequence[Point], threshold: int) -> list[Point]:
    """Reduce time-ordered points to at most `threshold` with Largest-Triangle-Three-Buckets.

    The first and last points are always kept; every kept point is one of the input's, in the
    input's order. A series already within the threshold is returned whole.
    Raises InvalidParameterError when threshold < 3.
    """
    if threshold < 3:
        raise InvalidParameterError(f"the LTTB threshold must be at least 3, not {threshold}")
    n = len(points)
    if n <= threshold:
        return list(points)
    origin = points[0].at
    xs = [(p.at - origin).total_seconds() for p in points]
    ys = [p.value for p in points]
    every = (n - 2) / (threshold - 2)
    kept = [0]
    a = 0
    for i in range(threshold - 2):
        # The next bucket's average is the third corner of the triangle.
        next_lo = math.floor((i + 1) * every) + 1
        next_hi = min(math.floor((i + 2) * every) + 1, n)
        span = next_hi - next_lo
        avg_x = sum(xs[next_lo:next_hi]) / span
        avg_y = sum(ys[next_lo:next_hi]) / span
        lo = math.floor(i * every) + 1
        hi = math.floor((i + 1) * every) + 1
        ax, ay = xs[a], ys[a]
        best, best_area = lo, -1.0
        for j in range(lo, hi):
            area = abs((ax - avg_x) * (ys[j] - ay) - (ax - xs[j]) * (avg_y - ay))
            if area > best_area:
                best, best_area = j, area
        kept.append(best)
        a = best
    kept.append(n - 1)
    return [points[k] for k in kept]


Parts = tuple[list[float], list[float], list[float]]


def decompose(series: Series, period: int = 7) -> Decomposition:
    """Split a series into trend, seasonal and residual parts with robust STL.

    Raises what check_decomposable raises.
    """
    check_decomposable(series, period)
    trend, seasonal, residual = stl_parts(series.values, period)
    return Decomposition(
        points=list(series.points),
        trend=trend,
        seasonal=seasonal,
        residual=residual,
        period=period,
    )


def check_decomposable(series: Series, period: int) -> None:
    """Refuse a decomposition STL cannot do.

    Raises InvalidParameterError for a period < 2 and SeriesTooShortError when the series holds
    fewer than two full periods.
    """
    if period < 2:
        raise InvalidParameterError(f"the seasonal period must be at least 2, not {period}")
    n = len(series.points)
    if n < 2 * period:
        raise SeriesTooShortError(
            f"{series.metric_id} has {n} {series.interval} buckets; decomposing with period "
            f"{period} needs at least {2 * period} (two full periods)"
        )


def stl_parts(values: Sequence[float], period: int) -> Parts:
    """Return robust STL's (trend, seasonal, residual) of `values` (the CPU-heavy part).

    Takes and returns plain floats so that a worker process receives and sends little.
    """
    with warnings.catch_warnings():
        # STL on a constant stretch divides 0 by 0 in its robustness weights; the parts stay finite.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = STL(np.asarray(values, dtype=float), period=period, robust=True).fit()
    return (
        [float(v) for v in result.trend],
        [float(v) for v in result.seasonal],
        [float(v) for v in result.resid],
    )


async def correlation(
    conn: Conn,
    metric1: str,
    metric2: str,
    *,
    start: datetime,
    end: datetime,
    tz: str,
    interval: Literal["hour", "day", "week"] = "day",
    measure1: Literal["count", "sum", "unique"] = "count",
    measure2: Literal["count", "sum", "unique"] = "count",
) -> Correlation:
    """Return Pearson's r of two metrics' series over the same buckets, with its p-value.

    Both series share one grid, so every bucket is a pair (zeros included). r and p are None
    when fewer than 3 buckets exist or either series is constant (r is undefined then).
    The p-value is two-sided, for the null hypothesis of no linear correlation.
    Raises what metric_series raises.
    """
    first = await metric_series(
        conn, metric1, start=start, end=end, tz=tz, interval=interval, measure=measure1
    )
    second = await metric_series(
        conn, metric2, start=start, end=end, tz=tz, interval=interval, measure=measure2
    )
    xs, ys = np.asarray(first.values), np.asarray(second.values)
    n = len(xs)
    if n < 3 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        logger.debug("correlation of %s and %s undefined over %d buckets", metric1, metric2, n)
        return Correlation(metric1, metric2, None, n, None)
    result = stats.pearsonr(xs, ys)
    r = max(-1.0, min(1.0, float(result.statistic)))
    return Correlation(metric1, metric2, r, n, float(result.pvalue))
