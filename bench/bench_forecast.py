"""Benchmark: time to fit each forecast model on a year of daily history.

    python bench/bench_forecast.py [--days 365] [--runs 5]

Fits every model of `analytics.forecast_models.FITTERS` on a synthetic daily series (linear
trend, weekly season, Gaussian noise; fixed seed) with a 30-day horizon, `--runs` times each,
and prints the median and maximum time per model next to seasonal naive, the cheapest model,
measured in the same run as the baseline. Then one full `forecast_values(..., model="auto")`
(three-fold backtest of every model plus the final fit). The unit tests check what the models
predict; how fast they are is measured here, on a quiet machine, not asserted in tests.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from klaviyo_analytics.analytics.forecast import forecast_values
from klaviyo_analytics.analytics.forecast_models import FITTERS


def synthetic(days: int, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    return 100 + 0.2 * t + 15 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 10, days)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    y = synthetic(args.days)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"series: {args.days} days; horizon 30; {args.runs} runs per model")
    for name, fit in FITTERS.items():
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            fit(y, 30, 0.95)
            times.append(time.perf_counter() - started)
        print(f"{name:>15}: median {statistics.median(times):8.3f} s, max {max(times):8.3f} s")
    started = time.perf_counter()
    result = forecast_values(y, horizon=30, level=0.95)
    print(
        f"auto (backtest + final fit): {time.perf_counter() - started:.2f} s, chose {result.model_name}"
    )


if __name__ == "__main__":
    main()
