"""Benchmark: fitting predicted CLV (BG/NBD + Gamma-Gamma, with intervals and the backtest).

    python bench/bench_clv.py [--profiles 250000] [--days 365]

Orders come from the sandbox's customer model (campaigns and flows off), grouped per customer
into order days as `analytics.clv.read_history` returns them (no database: this times the fit,
which the scheduler's job runs in a worker process). Prints the customers fitted, the fit time
(two fits: the full one and the calibration fit of the backtest, plus 400 interval draws per
customer), the backtest against the naive baseline and the fitted parameters against the truth.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections import defaultdict
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np

from klaviyo_analytics.analytics.clv import ClvHistory, fit_clv
from klaviyo_analytics.sandbox import catalog as c
from klaviyo_analytics.sandbox.config import StoreOptions
from klaviyo_analytics.sandbox.customers import TRUTH
from klaviyo_analytics.sandbox.generator import DAY, StoreGenerator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profiles", type=int, default=250_000)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    store = StoreGenerator(StoreOptions(seed=23, profiles=args.profiles, days=args.days,
                                        campaigns=0, flows=0))  # fmt: skip
    started = time.perf_counter()
    zone = ZoneInfo("America/New_York")
    per: dict[int, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for day in range(store.start_ts // DAY, store.end_ts // DAY + 1):
        ev = store.day(day)
        keep = (ev.metric == c.PLACED_ORDER) & (ev.profile >= 0) & (ev.ts <= store.end_ts)
        for who, ts, cents in zip(ev.profile[keep].tolist(), ev.ts[keep].tolist(),
                                  ev.value[keep].tolist(), strict=True):  # fmt: skip
            local = datetime.fromtimestamp(ts, UTC).astimezone(zone).date()
            per[who][(local - datetime(1970, 1, 1).date()).days] += cents / 100
    ids = sorted(per)
    history = ClvHistory(
        as_of=datetime.fromtimestamp(store.end_ts, UTC).astimezone(zone).date(),
        profile_ids=[store.catalog.profile_id(i) for i in ids],
        first=np.array([min(per[i]) for i in ids], dtype=np.int64),
        days=[np.array(sorted(per[i]), dtype=np.int64) for i in ids],
        values=[np.array([per[i][d] for d in sorted(per[i])]) for i in ids],
    )
    prepared = time.perf_counter() - started
    started = time.perf_counter()
    fit = fit_clv(history)
    took = time.perf_counter() - started
    bt = fit.backtest
    rate = float(store.customers.rate[np.array(ids)].mean())
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(f"store: {args.profiles:,} profiles, {args.days} days; {len(ids):,} customers"
          f" (history built in {prepared:.1f} s)")  # fmt: skip
    print(f"fit (full + backtest calibration + intervals): {took:.1f} s")
    print(
        f"backtest {bt['holdout_days']} days, {bt['customers']:,} customers: MAE orders"
        f" {bt['mae_orders']:.3f} (naive {bt['mae_orders_naive']:.3f}), revenue"
        f" {bt['mae_revenue']:.2f} (naive {bt['mae_revenue_naive']:.2f}); 90 % coverage"
        f" orders {bt['coverage_orders']:.3f}, revenue {bt['coverage_revenue']:.3f};"
        f" orders predicted {bt['orders_predicted']:.0f} vs actual {bt['orders_actual']:.0f}"
    )
    p = fit.parameters
    print(
        f"fitted r/alpha {p['r'] / p['alpha']:.5f}/day vs the customers' true mean rate"
        f" {rate:.5f}; r {p['r']:.3f} alpha {p['alpha']:.1f} (population truth r {TRUTH.r},"
        f" alpha {TRUTH.alpha}); GG mean spend {p['p'] * p['v'] / (p['q'] - 1):.2f}"
    )


if __name__ == "__main__":
    main()
