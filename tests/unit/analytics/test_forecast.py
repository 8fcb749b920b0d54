"""Forecast models and selection on synthetic series with a known trend and weekly season."""

from __future__ import annotations

import numpy as np
import pytest

from klaviyo_analytics.analytics.errors import (
    InvalidParameterError,
    ModelUnavailableError,
    SeriesTooShortError,
)
from klaviyo_analytics.analytics.forecast import backtest, forecast_values
from klaviyo_analytics.analytics.forecast_models import arima, ets, seasonal_naive

SEASON = np.array([0.0, 8.0, 15.0, 20.0, 10.0, -25.0, -28.0])


def synthetic(n: int, *, slope: float = 0.6, noise: float = 6.0, seed: int = 42) -> np.ndarray:
    """200 + slope*t + a weekly pattern + Gaussian noise (seeded)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 200.0 + slope * t + SEASON[t % 7] + rng.normal(0.0, noise, n)


def test_the_chosen_model_covers_held_out_days_and_beats_seasonal_naive() -> None:
    y = synthetic(120)
    result = forecast_values(y, horizon=30, level=0.95)
    scores = {s.model_name: s for s in result.backtest}
    assert set(scores) == {"seasonal_naive", "ets", "arima"}
    chosen, naive = scores[result.model_name], scores["seasonal_naive"]
    assert all(s.folds == 3 for s in scores.values())
    # 95% intervals should cover at least 85% of the 42 held-out days.
    assert chosen.coverage >= 0.85
    assert chosen.mape is not None and naive.mape is not None
    assert chosen.mape <= naive.mape
    # A trend of 0.6/day costs seasonal naive about 4.2 a day; the real models see the trend.
    assert result.model_name != "seasonal_naive"
    assert len(result.prediction.mean) == 30


def test_the_forecast_follows_the_known_trend_and_season() -> None:
    y = synthetic(120, noise=3.0)
    result = forecast_values(y, horizon=14, level=0.9)
    t = np.arange(120, 134)
    truth = 200.0 + 0.6 * t + SEASON[t % 7]
    assert np.mean(np.abs(result.prediction.mean - truth)) < 5.0
    assert np.all(result.prediction.lower < result.prediction.mean)
    assert np.all(result.prediction.mean < result.prediction.upper)


@pytest.mark.parametrize("fit", [seasonal_naive, ets, arima])
def test_each_model_widens_its_interval_with_the_level(fit: object) -> None:
    y = synthetic(63)
    narrow = fit(y, 21, 0.5)  # type: ignore[operator]
    wide = fit(y, 21, 0.99)  # type: ignore[operator]
    assert np.all(wide.upper - wide.lower > narrow.upper - narrow.lower)
    np.testing.assert_allclose(wide.mean, narrow.mean, rtol=1e-6)


def test_seasonal_naive_repeats_the_last_week_with_a_growing_interval() -> None:
    y = synthetic(28, noise=0.0, slope=0.0)
    p = seasonal_naive(y, 15, 0.95)
    np.testing.assert_allclose(p.mean, np.concatenate([y[-7:], y[-7:], y[-7 : 1 - 7]]))
    assert p.upper[0] - p.lower[0] == pytest.approx(0.0)  # a perfect weekly series: no doubt
    noisy = seasonal_naive(synthetic(28), 15, 0.95)
    widths = noisy.upper - noisy.lower
    assert (
        widths[0] == pytest.approx(widths[6]) and widths[7] > widths[6] and widths[14] > widths[7]
    )


def test_backtest_scores_are_computed_on_held_out_days() -> None:
    y = synthetic(35, noise=0.0, slope=0.0)
    score = backtest(y, "seasonal_naive", 0.95)
    # 35 days: one fold of 14 after 21 training days; a pure weekly pattern is forecast exactly.
    assert score.folds == 1 and score.mae == 0.0 and score.rmse == 0.0 and score.mape == 0.0
    assert score.coverage == 1.0


def test_mape_is_undefined_when_a_held_out_day_is_zero_and_selection_uses_mae() -> None:
    y = np.maximum(synthetic(70, noise=1.0) - 200.0, 0.0)
    assert (y[-42:] == 0).any()
    result = forecast_values(y, horizon=7, level=0.8)
    assert all(s.mape is None for s in result.backtest)
    best = min(result.backtest, key=lambda s: s.mae)
    assert result.model_name == best.model_name


def test_a_series_shorter_than_four_weeks_is_refused() -> None:
    with pytest.raises(SeriesTooShortError, match="at least 28"):
        forecast_values(synthetic(27), horizon=7, level=0.95)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"horizon": 0}, "horizon_days"),
        ({"horizon": 366}, "horizon_days"),
        ({"level": 0.49}, "level"),
        ({"level": 0.995}, "level"),
        ({"model": "prophet"}, "model"),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"horizon": 7, "level": 0.95} | options
    with pytest.raises(InvalidParameterError, match=message):
        forecast_values(synthetic(60), **args)  # type: ignore[arg-type]


def test_a_constant_series_leaves_only_seasonal_naive() -> None:
    result = forecast_values(np.full(40, 5.0), horizon=3, level=0.95)
    assert result.model_name == "seasonal_naive"
    assert [s.model_name for s in result.backtest] == ["seasonal_naive"]
    with pytest.raises(ModelUnavailableError, match="constant"):
        forecast_values(np.full(40, 5.0), horizon=3, level=0.95, model="ets")
