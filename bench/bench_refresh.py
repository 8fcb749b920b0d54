"""Benchmark: what the sync's refresh of aggregates and facts costs on a large store.

    python bench/bench_refresh.py [--events 5000000] [--runs 3]

Builds a store the way bench_overview.py does (`--events` events over 400 days generated
straight into `klaviyo_events`, then the aggregates and facts rebuilt), on a fresh embedded
PostgreSQL or DATABASE_URL's server (scratch database, dropped at the end). Then, `--runs`
times each, it times the sync's after-events hooks (`wiring.AFTER_EVENTS`: aggregates, order
lines, then facts, in one transaction, as `refresh_dirty` runs them) over:

* an hour of new events: the newest hour of the store copied one hour later with new ids,
  i.e. what an hourly incremental sync leaves to refresh (the issue's target: <= 5 s with the
  sync included; fetching and storing one hour is one or two pages, measured in
  bench_sync.py);
* an hour of late events 200 days back (a re-read of an old window);
* the whole history, i.e. a backfill's refresh (baseline: the cost the hourly refresh would
  have if it did not follow the touched range; `--no-whole` leaves it out on large stores,
  where the rebuild's own seconds, printed too, serve as the same-run baseline).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from datetime import datetime, timedelta
from typing import Any

from bench_overview import TZ, load
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from scratch import scratch_database, server_label

from klaviyo_analytics import wiring

NEW_HOUR = (
    'INSERT INTO klaviyo_events (id, "timestamp", metric_id, profile_id, value, properties,'
    " attributed_source_type, attributed_source_id, attributed_message_id)"
    " SELECT id || %(tag)s, \"timestamp\" + interval '1 hour', metric_id, profile_id, value,"
    " properties, attributed_source_type, attributed_source_id, attributed_message_id"
    ' FROM klaviyo_events WHERE "timestamp" > %(hi)s - interval \'1 hour\' AND "timestamp" <= %(hi)s'
)


async def refresh(c: AsyncConnection[Any], lo: datetime, hi: datetime) -> float:
    started = time.perf_counter()
    async with c.transaction():
        for hook in wiring.AFTER_EVENTS:
            await hook(c, lo, hi, TZ)  # type: ignore[arg-type]
    return time.perf_counter() - started


async def measure(conninfo: str, runs: int, whole: bool) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"new hour": [], "late hour": [], "whole history": []}
    async with await AsyncConnection.connect(conninfo, row_factory=dict_row, autocommit=True) as c:
        await c.execute("SET statement_timeout = 0")
        for run in range(runs):
            cur = await c.execute(
                'SELECT min("timestamp") AS lo, max("timestamp") AS hi FROM klaviyo_events'
            )
            span = await cur.fetchone()
            assert span is not None
            cur = await c.execute(NEW_HOUR, {"tag": f"_n{run}", "hi": span["hi"]})
            print(f"  run {run + 1}: {cur.rowcount} new events in the new hour", flush=True)
            new_hi = span["hi"] + timedelta(hours=1)
            out["new hour"].append(await refresh(c, span["hi"], new_hi))
            late = span["hi"] - timedelta(days=200)
            out["late hour"].append(await refresh(c, late - timedelta(hours=1), late))
            if run == 0 and whole:
                out["whole history"].append(await refresh(c, span["lo"], new_hi))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-whole", action="store_true", help="leave out the whole history")
    args = parser.parse_args()
    with scratch_database("refresh") as target:
        took = asyncio.run(load(target, args.events))
        results = asyncio.run(measure(target, args.runs, not args.no_whole))
    load_avg = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"server: {server_label()}; load average at the end {load_avg}")  # fmt: skip
    print(f"events: {args.events:,}; generate {took['generate_s']:.0f} s, aggregates "
          f"{took['aggregates_s']:.0f} s, facts rebuild {took['facts_s']:.0f} s")  # fmt: skip
    print("| refreshed range | runs | median | max |")
    for name, values in results.items():
        if not values:
            continue
        print(
            f"| {name} | {len(values)} | {statistics.median(values):.2f} s | {max(values):.2f} s |"
        )


if __name__ == "__main__":
    main()
