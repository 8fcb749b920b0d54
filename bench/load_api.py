"""Load test of the REST API: /api/overview cached and uncached, with and without a sync running.

    python bench/load_api.py [--requests 1500] [--concurrency 16] [--max-seconds 60]
                             [--profiles 5000] [--days 120]

Everything runs on this machine and only 127.0.0.1 is ever contacted: an embedded PostgreSQL in
a temporary folder, the sandbox (`klaviyo-analytics sandbox`, its own process, 30 ms latency per
request), one `klaviyo-analytics sync events` to fill the database, an admin key
(`apikey create`), then `klaviyo-analytics serve` in its own process. This process is the load
generator: `--concurrency` asyncio workers with httpx, each phase bounded by `--requests` and
`--max-seconds`.

Phases: `cached` asks one custom range over and over (the first answer is cached, the rest are
hits); `uncached` asks a distinct custom range on every request (always a miss: the KPIs are
computed from the facts). Both run once alone and once while `sync events --full` re-syncs the
whole store into the same database from another process. During every phase `/metrics` is
sampled every 250 ms for the pool's `waiting` and `in_use` gauges and its acquire timeouts.
The per-key rate limit is raised for the run (API_RATE_LIMIT_PER_MINUTE) so that it measures the
server, not the limiter. Exits 1 if any request failed or the pool ever had a waiting client.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import httpx

from klaviyo_analytics.db import databases
from klaviyo_analytics.db.embedded import EmbeddedPostgres

HOST = "127.0.0.1"  # the only address this script ever talks to
API_KEY = "pk_load_0123456789abcdef"
STORE_END = date(2026, 7, 1)  # the sandbox's default "now"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def machine() -> str:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {mem_gib:.0f} GiB, "
        f"Python {platform.python_version()}"
    )


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "klaviyo_analytics.cli", *args]


def wait_http(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout_s:.0f} s")


@dataclass
class Phase:
    name: str
    sync: bool
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    max_waiting: float = 0.0
    max_in_use: float = 0.0
    acquire_timeouts: float = 0.0
    syncs_run: int = 0

    def row(self) -> str:
        lat = sorted(self.latencies_ms)
        q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else [0.0] * 99
        n = len(lat) + sum(self.errors.values())
        errors = ", ".join(f"{k}: {v}" for k, v in self.errors.items()) or "0"
        return (
            f"| {self.name} | {'yes' if self.sync else 'no'} | {n:,} | {n / self.seconds:,.0f} "
            f"| {q[49]:.1f} | {q[94]:.1f} | {q[98]:.1f} | {errors} | {self.max_in_use:.0f} "
            f"| {self.max_waiting:.0f} | {self.acquire_timeouts:.0f} |"
        )


def gauge(text: str, name: str) -> float:
    found = re.search(rf"^klaviyo_analytics_db_pool_{name}(?:_total)? ([0-9.e+-]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def sample_pool(http: httpx.AsyncClient, phase: Phase, stop: asyncio.Event) -> None:
    first: float | None = None
    while not stop.is_set():
        text = (await http.get("/metrics")).text
        phase.max_waiting = max(phase.max_waiting, gauge(text, "waiting"))
        phase.max_in_use = max(phase.max_in_use, gauge(text, "in_use"))
        timeouts = gauge(text, "acquire_timeouts")
        first = timeouts if first is None else first
        phase.acquire_timeouts = timeouts - first
        try:
            await asyncio.wait_for(stop.wait(), timeout=0.25)
        except TimeoutError:
            pass


def ranges(cached: bool, count: int, days: int, rng: random.Random) -> list[dict[str, str]]:
    first = STORE_END - timedelta(days=days - 1)
    if cached:
        start = STORE_END - timedelta(days=30)
        return [{"start": start.isoformat(), "end": STORE_END.isoformat()}] * count
    pairs = [(s, n) for s in range(days - 1) for n in range(1, days - s)]
    if len(pairs) < count:
        raise SystemExit(f"only {len(pairs)} distinct ranges in {days} days; lower --requests")
    chosen = rng.sample(pairs, count)
    return [
        {
            "start": (first + timedelta(days=s)).isoformat(),
            "end": (first + timedelta(days=s + n)).isoformat(),
        }
        for s, n in chosen
    ]


async def run_phase(
    base: str, token: str, phase: Phase, params: list[dict[str, str]], args: argparse.Namespace
) -> None:
    queue: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    for p in params:
        queue.put_nowait(p)
    deadline = time.monotonic() + args.max_seconds
    limits = httpx.Limits(max_connections=args.concurrency + 2)
    async with httpx.AsyncClient(
        base_url=base, headers={"X-API-Key": token}, timeout=30, limits=limits
    ) as http:
        if params and params[0] == params[-1]:  # cached: put the answer in the cache first
            (await http.get("/api/overview", params=params[0])).raise_for_status()

        async def worker() -> None:
            while time.monotonic() < deadline:
                try:
                    p = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                began = time.perf_counter()
                try:
                    response = await http.get("/api/overview", params=p)
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                    phase.errors[key] = phase.errors.get(key, 0) + 1
                    continue
                if response.status_code == 200:
                    phase.latencies_ms.append((time.perf_counter() - began) * 1000)
                else:
                    key = str(response.status_code)
                    phase.errors[key] = phase.errors.get(key, 0) + 1

        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_pool(http, phase, stop))
        began = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        phase.seconds = time.monotonic() - began
        stop.set()
        await sampler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500, help="per phase")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-seconds", type=float, default=60, help="per phase")
    parser.add_argument("--profiles", type=int, default=5000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="ka_load_"))
    log = (work / "processes.log").open("ab")
    print(f"machine: {machine()}; work folder {work}", flush=True)
    procs: list[subprocess.Popen[bytes]] = []
    with EmbeddedPostgres(work / "pgdata") as server:
        databases.create_database(server.conninfo("postgres"), "load")
        sandbox_port, api_port = free_port(), free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DB_", "KLAVIYO_"))},
            "DATABASE_URL": server.conninfo("load"),
            "KLAVIYO_API_KEY": API_KEY,
            "KLAVIYO_BASE_URL": f"http://{HOST}:{sandbox_port}",
            "API_RATE_LIMIT_PER_MINUTE": "100000000",
            "LOG_LEVEL": "WARNING",
        }
        env.pop("REDIS_URL", None)
        try:
            procs.append(
                subprocess.Popen(
                    cli("sandbox", "--port", str(sandbox_port), "--no-rate-limits",
                        "--profiles", str(args.profiles), "--days", str(args.days),
                        "--latency-ms", "30", "--api-key", API_KEY),
                    env=env, stdout=log, stderr=subprocess.STDOUT,
                )
            )  # fmt: skip
            wait_http(f"http://{HOST}:{sandbox_port}/admin/stats")
            began = time.monotonic()
            subprocess.run(cli("sync", "events"), env=env, check=True, stdout=log, stderr=log)
            print(f"initial sync: {time.monotonic() - began:.1f} s", flush=True)
            token = subprocess.run(
                cli("apikey", "create", "--role", "admin", "--name", "load"),
                env=env, check=True, capture_output=True, text=True,
            ).stdout.strip().splitlines()[-1]  # fmt: skip
            procs.append(
                subprocess.Popen(
                    cli("serve", "--host", HOST, "--port", str(api_port)),
                    env=env, stdout=log, stderr=subprocess.STDOUT,
                )
            )  # fmt: skip
            base = f"http://{HOST}:{api_port}"
            wait_http(f"{base}/health")

            phases = [
                Phase("cached", sync=False),
                Phase("uncached", sync=False),
                Phase("cached", sync=True),
                Phase("uncached", sync=True),
            ]
            for phase in phases:
                params = ranges(phase.name == "cached", args.requests, args.days, rng)
                sync: subprocess.Popen[bytes] | None = None
                if phase.sync:
                    sync = subprocess.Popen(
                        cli("sync", "events", "--full"), env=env, stdout=log, stderr=log
                    )
                    phase.syncs_run = 1
                    time.sleep(3)  # past start-up and migrations, into the paging
                    if sync.poll() is not None:
                        raise SystemExit("the concurrent sync ended before the phase began")
                asyncio.run(run_phase(base, token, phase, params, args))
                if sync is not None:
                    still_running = sync.poll() is None
                    sync.terminate()
                    sync.wait(timeout=60)
                    print(f"sync still running at the end of the phase: {still_running}")
                print(phase.row(), flush=True)
        finally:
            for proc in reversed(procs):
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            log.close()

    print()
    print(
        "| /api/overview | sync running | requests | req/s | p50 ms | p95 ms | p99 ms | errors "
        "| pool in use (max) | pool waiting (max) | acquire timeouts |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for phase in phases:
        print(phase.row())
    failed = any(p.errors or p.max_waiting or p.acquire_timeouts for p in phases)
    print(f"\nload: {'FAIL' if failed else 'PASS'} ({time.strftime('%Y-%m-%d')}), "
          f"concurrency {args.concurrency}, {machine()}")  # fmt: skip
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
