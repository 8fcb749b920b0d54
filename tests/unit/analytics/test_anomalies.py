"""The anomaly rule on bare arrays: noise scale, spikes at the edges, flat and short series."""

from __future__ import annotations

import numpy as np
import pytest

from klaviyo_analytics.analytics.anomalies import noise_sigma, score_days
from klaviyo_analytics.analytics.errors import SeriesTooShortError

SEASON = np.array([0.0, 8.0, 15.0, 20.0, 10.0, -25.0, -28.0])


def days(n: int, seed: int, noise: float = 4.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 300.0 + 0.5 * t + SEASON[t % 7] + rng.normal(0.0, noise, n)


def test_the_noise_scale_ignores_the_season_the_trend_and_a_spike() -> None:
    y = days(140, seed=1, noise=4.0)
    y[70] += 500.0
    assert noise_sigma(y) == pytest.approx(4.0, rel=0.2)


@pytest.mark.parametrize("where", [2, 30, 53])
def test_a_spike_is_flagged_without_flagging_its_neighbours(where: int) -> None:
    for seed in range(5):
        y = days(56, seed)
        y[where] += 100.0
        _, scores = score_days(y, 3.5)
        flagged = set(np.flatnonzero(np.abs(scores) > 3.5).tolist())
        assert where in flagged and not flagged & {where - 1, where + 1}
        # Another day may sit at the threshold by chance, never far beyond it.
        assert all(abs(scores[i]) < 4.5 for i in flagged - {where})


def test_quiet_series_flag_nothing() -> None:
    flagged = sum(
        int(np.sum(np.abs(score_days(days(56, seed), 3.5)[1]) > 3.5)) for seed in range(20)
    )
    assert flagged <= 1  # 1120 ordinary days; a 3.5-sigma rule allows about 0.5 by chance


def test_a_flat_series_has_no_anomalies_and_a_short_one_is_refused() -> None:
    _, scores = score_days(np.full(21, 7.0), 3.5)
    assert not scores.any()
    with pytest.raises(SeriesTooShortError):
        score_days(np.ones(13), 3.5)
