"""Benchmark: heavy analytics vs /health, and the answer cache's memory (issue 14, items 1-2).

    python bench/bench_security.py [--events 1000000] [--base-src DIR]

Loads `--events` events into a scratch database exactly as bench_overview.py does (400 days,
13 metrics) and refreshes the pre-aggregates (facts are not needed here). Then, for each
server build (this checkout, and with `--base-src` the `src` folder of another commit, e.g.
`git archive e0d5302 src | tar -x -C /tmp/base`), it starts uvicorn in its own process on
127.0.0.1 (`CACHE_MAX_BYTES=16 MiB`) and measures:

* idle: /health polled 40 times every 100 ms with nothing else running (the machine's noise);
* first, heavy: a decomposition of the busiest metric (hourly, period 24, 250 days) while
  /health is polled every 100 ms: the request's time and /health's p95 and worst latency
  during it; "first" is the server's first fit (it may wait for worker processes to start);
* largest: the same at the largest work the limits allow (hourly, period 15, 399 days:
  9,576 buckets x 15 <= 150,000);
* oversize: the issue's request (hourly, period 366, 2016-07-03..2026-07-01; 30 s client
  timeout) with /health polled the same way;
* junk: RSS of the server before and after 50 hourly timeseries requests (400 days) that differ
  only in an unknown query parameter;
* distinct: RSS after 50 more hourly timeseries requests that differ in a valid parameter
  (`max_points`), so each is a new cache entry.

The server is stopped after each build (a build that runs the oversize STL would otherwise go
on for minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from bench_overview import TZ, load
from scratch import free_port, scratch_database

from klaviyo_analytics.api.auth import hash_token

TOKEN = "ka_bench_security_token_0123456789abcdef"
REPO = Path(__file__).resolve().parent.parent


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def start_server(
    conninfo: str, src: Path | None, home: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": conninfo,
        "ACCOUNT_TIMEZONE": TZ,
        "MIN_FREE_DISK_MB": "0",
        "KLAVIYO_ANALYTICS_HOME": str(home),
        "API_RATE_LIMIT_PER_MINUTE": "1000000",
        "CACHE_MAX_BYTES": str(16 * 1024 * 1024),
        "LOG_LEVEL": "WARNING",
    }
    env.pop("KLAVIYO_API_KEY", None)
    env.pop("REDIS_URL", None)
    if src is not None:
        env["PYTHONPATH"] = f"{src}{os.pathsep}{REPO / 'bench'}"
    else:
        env["PYTHONPATH"] = str(REPO / "bench")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "security_app:app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the server did not start")


async def heavy_with_health(base: str, path: str, params: dict[str, str]) -> dict[str, Any]:
    """Run one request while polling /health; return its status, time and /health's worst."""
    latencies: list[float] = []
    headers = {"X-API-Key": TOKEN}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:

        async def heavy() -> tuple[str, float]:
            started = time.perf_counter()
            try:
                response = await http.get(path, params=params)
                status = str(response.status_code)
            except httpx.TimeoutException:
                status = "timeout (30 s)"
            return status, time.perf_counter() - started

        task = asyncio.create_task(heavy())
        await asyncio.sleep(0.2)
        while not task.done():
            started = time.perf_counter()
            try:
                await http.get("/health")
                latencies.append(time.perf_counter() - started)
            except httpx.TimeoutException:
                latencies.append(30.0)
            await asyncio.sleep(0.1)
        status, took = await task
    return {"status": status, "took_s": round(took, 2), **health_figures(latencies)}


def health_figures(latencies: list[float]) -> dict[str, Any]:
    ordered = sorted(latencies)
    p95 = ordered[int(0.95 * (len(ordered) - 1))] if ordered else 0.0
    return {
        "health_p95_ms": round(p95 * 1000, 1),
        "health_max_ms": round(max(ordered, default=0) * 1000, 1),
        "health_polls": len(ordered),
    }


async def idle_health(base: str, polls: int = 40) -> dict[str, Any]:
    """Poll /health with nothing else running: the machine's own noise, for comparison."""
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for _ in range(polls):
            started = time.perf_counter()
            await http.get("/health")
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.1)
    return health_figures(latencies)


async def cache_growth(base: str, pid: int, today: date) -> dict[str, Any]:
    headers = {"X-API-Key": TOKEN}
    start = (today - timedelta(days=400)).isoformat()
    path = "/api/analytics/timeseries/m1"
    common = {"interval": "hour", "start": start, "end": today.isoformat()}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=120) as http:
        first = await http.get(path, params=common)
        rss0 = rss_mb(pid)
        junk = [
            (await http.get(path, params={**common, "junk": str(i)})).status_code for i in range(50)
        ]
        rss1 = rss_mb(pid)
        distinct = [
            (await http.get(path, params={**common, "max_points": str(9000 + i)})).status_code
            for i in range(50)
        ]
        rss2 = rss_mb(pid)
    return {
        "body_kb": round(len(first.content) / 1024),
        "rss_before_mb": round(rss0),
        "junk_statuses": sorted(set(junk)),
        "rss_after_junk_mb": round(rss1),
        "distinct_statuses": sorted(set(distinct)),
        "rss_after_distinct_mb": round(rss2),
    }


async def measure(conninfo: str, src: Path | None, today: date) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as home:
        process, base = start_server(conninfo, src, Path(home))
        try:

            def hourly(days: int, period: int, ending: int = 1) -> dict[str, str]:
                return {
                    "interval": "hour",
                    "period": str(period),
                    "start": (today - timedelta(days=days + ending - 1)).isoformat(),
                    "end": (today - timedelta(days=ending)).isoformat(),
                }

            path = "/api/analytics/decomposition/m1"
            result: dict[str, Any] = {"idle": await idle_health(base)}
            # The first fit may also wait for worker processes to start; the next ones do not
            # (each asks for a different range, so none is a cache hit).
            result["first"] = await heavy_with_health(base, path, hourly(250, 24, ending=2))
            result["heavy"] = await heavy_with_health(base, path, hourly(250, 24))
            result["largest"] = await heavy_with_health(base, path, hourly(399, 15))
            result["cache"] = await cache_growth(base, process.pid, today)
            issue = {
                "interval": "hour",
                "period": "366",
                "start": "2016-07-03",
                "end": "2026-07-01",
            }
            result["oversize"] = await heavy_with_health(
                base, "/api/analytics/decomposition/m1", issue
            )
            return result
        finally:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--base-src", type=Path, default=None)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    with scratch_database("bench_security") as conninfo:
        took = asyncio.run(load(conninfo, args.events, facts=False))
        print(f"load: {took}")
        with psycopg.connect(conninfo) as c:
            c.execute(
                "INSERT INTO api_keys (name, role, token_hash, prefix) VALUES (%s, %s, %s, %s)",
                ("bench", "reader", hash_token(TOKEN), TOKEN[:10]),
            )
            row = c.execute("SELECT (now() AT TIME ZONE %s)::date", (TZ,)).fetchone()
            assert row is not None
            today: date = row[0]
        builds: list[tuple[str, Path | None]] = [("after (this checkout)", None)]
        if args.base_src is not None:
            builds.insert(0, (f"before ({args.base_src})", args.base_src))
        for label, src in builds:
            result = asyncio.run(measure(conninfo, src, today))
            loadavg = [round(x, 1) for x in os.getloadavg()]
            print(label, result, "load average", loadavg, flush=True)


if __name__ == "__main__":
    main()
