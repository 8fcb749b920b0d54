"""Benchmark: how fast the sandbox generates store events, and serves them over HTTP.

    python bench/bench_sandbox.py [--profiles 20000] [--days 30]

Generation: every day of a store through `StoreGenerator.day` (numpy, no I/O), events/s.
Serving: one client paging `/api/events` at 1,000 per page from a sandbox started in this
process on 127.0.0.1 (rate limits off), events/s. The generation rate is the baseline the HTTP
figure is read against: the gap is rendering JSON:API and the HTTP stack.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import httpx

from klaviyo_analytics.sandbox.config import SandboxConfig, StoreOptions
from klaviyo_analytics.sandbox.generator import DAY, StoreGenerator
from klaviyo_analytics.sandbox.server import SandboxServer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profiles", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    options = StoreOptions(seed=3, profiles=args.profiles, days=args.days, campaigns=8)
    store = StoreGenerator(options)
    started = time.perf_counter()
    total = sum(len(store.day(d)) for d in range(store.start_ts // DAY, store.end_ts // DAY + 1))
    generated = total / (time.perf_counter() - started)
    with SandboxServer(SandboxConfig(store=options, rate_limits=False)) as server:
        headers = {"Authorization": f"Klaviyo-API-Key {server.api_key}", "revision": "2026-07-15"}
        served = 0
        url: str | None = f"{server.base_url}/api/events?page[size]=1000&sort=datetime"
        started = time.perf_counter()
        with httpx.Client(headers=headers, timeout=60) as http:
            while url:
                body = http.get(url).json()
                served += len(body["data"])
                url = body["links"].get("next")
        http_rate = served / (time.perf_counter() - started)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"store: {args.profiles:,} profiles, {args.days} days, {total:,} events")
    print(
        f"generation: {generated:,.0f} events/s; over HTTP to one client: {http_rate:,.0f} events/s ({served:,} served)"
    )


if __name__ == "__main__":
    main()
