"""Benchmark: the shopping funnel (`products.funnel`) at scale, from `fact_funnel_days`.

    python bench/bench_funnel.py [--events 1000000] [--runs 5]

Generates the store of bench_overview.py (`--events` events over 400 days for 200,000
profiles: 15 % Viewed Product, 8 % Started Checkout, 3 % Placed Order, opens and clicks naming
campaigns and flows) straight into `klaviyo_events` of a scratch database (fresh embedded
PostgreSQL, or DATABASE_URL's server), then times `products.funnel` for the last 14, 30 and 90
days (America/New_York), p50/p95 over `--runs` runs after one warm-up. The load rebuilds the
facts as `analytics rebuild` does (the funnel's fact last); then the fact's full build is
timed again on its own (`rebuild_funnel_facts`), and the funnel part of an hourly refresh
(`update_funnel_facts` over the newest hour, the other hooks left out) `--runs` times.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_overview import TZ, load
from scratch import scratch_database, server_label

from klaviyo_analytics.analytics import products
from klaviyo_analytics.analytics.facts import EMAIL_TOUCH_WINDOW, SMS_TOUCH_WINDOW
from klaviyo_analytics.analytics.funnel_facts import rebuild_funnel_facts, update_funnel_facts
from klaviyo_analytics.analytics.periods import DateRange, local_today
from klaviyo_analytics.db.pool import Conn, Database


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(conninfo: str, runs: int) -> list[tuple[int, int, float, float]]:
    today = local_today(TZ)
    out = []
    async with Database(conninfo, min_size=1, max_size=2) as db:
        for days in (14, 30, 90):
            rng = DateRange(today - timedelta(days=days - 1), today)

            async def read(conn: Conn, rng: DateRange = rng) -> products.Funnel:
                return await products.funnel(conn, rng)

            found = await db.run(read, readonly=True)
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                await db.run(read, readonly=True)
                times.append((time.perf_counter() - started) * 1000)
            viewers = found.steps[0].profiles
            out.append((days, viewers, statistics.median(times), percentile(times, 0.95)))
    return out


async def build_costs(conninfo: str, runs: int) -> tuple[float, list[float]]:
    """Return the seconds of a full build of the fact, and of each hourly funnel refresh."""
    windows = {"email_window": EMAIL_TOUCH_WINDOW, "sms_window": SMS_TOUCH_WINDOW}
    async with Database(conninfo, min_size=1, max_size=1, statement_timeout_ms=0) as db:

        async def rebuild(conn: Conn) -> float:
            started = time.perf_counter()
            await rebuild_funnel_facts(conn, TZ, **windows)
            return time.perf_counter() - started

        full = await db.run(rebuild)

        async def hour(conn: Conn) -> float:
            cur = await conn.execute('SELECT max("timestamp") AS hi FROM klaviyo_events')
            row = await cur.fetchone()
            assert row is not None
            started = time.perf_counter()
            await update_funnel_facts(conn, row["hi"] - timedelta(hours=1), row["hi"], TZ,
                                      **windows)  # fmt: skip
            return time.perf_counter() - started

        hourly = [await db.run(hour) for _ in range(runs)]
    return full, hourly


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with scratch_database("bench_funnel") as conninfo:
        took = asyncio.run(load(conninfo, args.events))
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores,"
              f" load {os.getloadavg()[0]:.1f}; {server_label()}; {args.events:,} events; {took}")  # fmt: skip
        results = asyncio.run(measure(conninfo, args.runs))
        full, hourly = asyncio.run(build_costs(conninfo, args.runs))
        print(f"load at the end {os.getloadavg()[0]:.1f}")
    print(f"fact_funnel_days full build {full:.1f} s; hourly funnel refresh"
          f" p50 {statistics.median(hourly) * 1000:.0f} ms, max {max(hourly) * 1000:.0f} ms")  # fmt: skip
    print("| range | viewers | p50 | p95 |")
    print("|---|---|---|---|")
    for days, viewers, p50, p95 in results:
        print(f"| {days} days | {viewers:,} | {p50:.0f} ms | {p95:.0f} ms |")


if __name__ == "__main__":
    main()
