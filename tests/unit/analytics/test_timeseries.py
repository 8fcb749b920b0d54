"""LTTB downsampling properties and STL decomposition, without a database."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klaviyo_analytics.analytics.errors import InvalidParameterError, SeriesTooShortError
from klaviyo_analytics.analytics.timeseries import Point, Series, decompose, lttb

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def points_from(values: list[float], steps: list[int] | None = None) -> list[Point]:
    at, out = T0, []
    for i, v in enumerate(values):
        at += timedelta(hours=steps[i] if steps else 1)
        out.append(Point(at, v))
    return out


values_st = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=0, max_size=300
)


@settings(max_examples=200, deadline=None)
@given(values=values_st, threshold=st.integers(min_value=3, max_value=400), data=st.data())
def test_lttb_keeps_ends_and_returns_an_ordered_subset_of_at_most_threshold_points(
    values: list[float], threshold: int, data: st.DataObject
) -> None:
    steps = data.draw(st.lists(st.integers(1, 50), min_size=len(values), max_size=len(values)))
    points = points_from(values, steps)
    out = lttb(points, threshold)
    assert len(out) == min(len(points), threshold)
    if points:
        assert out[0] is points[0] and out[-1] is points[-1]
    index = {id(p): i for i, p in enumerate(points)}
    positions = [index[id(p)] for p in out]  # KeyError if a point was made up
    assert positions == sorted(set(positions))  # input order, no repeats
    assert all(a.at < b.at for a, b in itertools.pairwise(out))


def test_lttb_keeps_a_lone_spike_and_a_lone_dip() -> None:
    values = [10.0] * 500
    values[123], values[377] = 90.0, -40.0
    kept = [p.value for p in lttb(points_from(values), 20)]
    assert 90.0 in kept and -40.0 in kept


@pytest.mark.parametrize("threshold", [2, 0, -5])
def test_lttb_refuses_thresholds_below_three(threshold: int) -> None:
    with pytest.raises(InvalidParameterError, match="at least 3"):
        lttb(points_from([1.0] * 10), threshold)


def weekly_series(n: int, *, noise: float = 0.0, seed: int = 0) -> Series:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    season = np.array([0.0, 4.0, 8.0, 12.0, 6.0, -15.0, -15.0])
    values = 100 + 0.5 * t + season[t % 7] + rng.normal(0, noise, n)
    points = [Point(T0 + timedelta(days=i), float(v)) for i, v in enumerate(values)]
    return Series("m", "day", "count", points, False)


def test_decompose_recovers_a_known_weekly_season_and_trend() -> None:
    series = weekly_series(70, noise=0.5, seed=3)
    parts = decompose(series)
    assert len(parts.trend) == len(parts.seasonal) == len(parts.residual) == 70
    recon = np.add(np.add(parts.trend, parts.seasonal), parts.residual)
    np.testing.assert_allclose(recon, series.values, atol=1e-8)
    middle = slice(14, 56)
    slope = np.polyfit(np.arange(70)[middle], np.asarray(parts.trend)[middle], 1)[0]
    assert slope == pytest.approx(0.5, abs=0.05)
    season = np.asarray(parts.seasonal)[middle]
    expected = np.array([0.0, 4.0, 8.0, 12.0, 6.0, -15.0, -15.0])  # day 14 is t % 7 == 0
    np.testing.assert_allclose(season[:7] - season[:7].mean(), expected - expected.mean(), atol=1.5)


def test_decompose_needs_two_full_periods() -> None:
    with pytest.raises(SeriesTooShortError, match="at least 14"):
        decompose(weekly_series(13))
    assert len(decompose(weekly_series(14)).trend) == 14


def test_decompose_refuses_a_period_below_two() -> None:
    with pytest.raises(InvalidParameterError, match="period"):
        decompose(weekly_series(30), period=1)
