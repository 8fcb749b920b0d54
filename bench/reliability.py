"""Reliability at full size: crashes, database restarts and fault storms (issue 9).

    python bench/reliability.py crash [--profiles 15000] [--days 90] [--kills 4] [--restarts 2]
    python bench/reliability.py storm [--profiles 2000] [--days 60]

Both start their own embedded PostgreSQL (in a temporary folder) and their own sandbox on
127.0.0.1; nothing leaves the machine. Each prints one Markdown table row per check and exits 1
if any check failed.

crash: a clean `klaviyo-analytics sync events` of the whole store into database A (the
baseline), then into database B the same command killed with SIGKILL at `--kills` random
moments (each restart resumes from the checkpoints) and finally run to the end; then into
database C one run during which the database server is restarted `--restarts` times. B and C
must equal A table for table: row counts and an md5 over every row (tests/fixtures/sync.py).

storm: a clean in-process sync of every stream into database A, then the same store behind a
sandbox injecting 20 % 429 (Retry-After: 1), 5 % 500, 5 % 503, 5 % timeouts (the sandbox
hangs 10 s, the client gives up after 5 s), 2 % malformed bodies and 3 % connection resets
into database B, with the client's production retry policy and rate limiter. B must equal A,
every run must succeed, and the run history must count the retries.

The CI-sized versions are tests/integration/sync/test_processes.py and tests/reliability/.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fixtures.sync import fingerprint, sandbox_now, sandbox_stats

from klaviyo_analytics.db import databases
from klaviyo_analytics.db.embedded import EmbeddedPostgres
from klaviyo_analytics.db.migrate import migrate
from klaviyo_analytics.db.pool import Database
from klaviyo_analytics.klaviyo import KlaviyoClient
from klaviyo_analytics.klaviyo.client import DEFAULT_RETRY
from klaviyo_analytics.sandbox.config import FaultOptions, SandboxConfig, StoreOptions
from klaviyo_analytics.sandbox.server import SandboxServer
from klaviyo_analytics.sync.events import EventSyncOptions
from klaviyo_analytics.sync.runner import DataSyncService, SyncOptions

API_KEY = "pk_reliability_0123456789abcdef"


def machine() -> str:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, {mem_gib:.0f} GiB, "
        f"Python {platform.python_version()}"
    )


def create_database(server: EmbeddedPostgres, name: str) -> str:
    databases.drop_database(server.conninfo("postgres"), name)
    databases.create_database(server.conninfo("postgres"), name)
    conninfo = server.conninfo(name)
    asyncio.run(migrate(conninfo))
    return conninfo


def count(conninfo: str, table: str = "klaviyo_events") -> int:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def sync_env(conninfo: str, sandbox: SandboxServer, **extra: str) -> dict[str, str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("DB_", "DATABASE_URL", "KLAVIYO_"))
    }
    return {
        **base,
        "DATABASE_URL": conninfo,
        "KLAVIYO_API_KEY": sandbox.api_key,
        "KLAVIYO_BASE_URL": sandbox.base_url,
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def start_sync(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "klaviyo_analytics.cli", "sync", "events"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def run_to_end(env: dict[str, str], log: Path, timeout_s: float = 3600) -> float:
    began = time.monotonic()
    proc = start_sync(env, log)
    if proc.wait(timeout=timeout_s) != 0:
        raise SystemExit(f"sync failed (exit {proc.returncode}); see {log}")
    return time.monotonic() - began


def verdict(expected: dict[str, tuple[int, str]], got: dict[str, tuple[int, str]]) -> str:
    differing = [t for t in expected if expected[t] != got.get(t)]
    return "yes" if not differing else f"NO ({', '.join(differing)})"


def crash(args: argparse.Namespace) -> bool:
    rng = random.Random(args.seed)
    store = StoreOptions(seed=args.seed, profiles=args.profiles, days=args.days)
    work = Path(tempfile.mkdtemp(prefix="ka_reliability_"))
    log = work / "sync.log"
    print(f"machine: {machine()}; work folder {work}", flush=True)
    config = SandboxConfig(store=store, api_key=API_KEY, rate_limits=False)
    with EmbeddedPostgres(work / "pgdata") as server, SandboxServer(config) as sandbox:
        truth = sandbox.generator.count_events()
        print(f"store: {args.profiles} profiles, {args.days} days, {truth:,} events", flush=True)

        clean = create_database(server, "clean")
        clean_s = run_to_end(sync_env(clean, sandbox), log)
        expected = fingerprint(clean)
        print(f"undisturbed: {count(clean):,} events in {clean_s:.1f} s", flush=True)

        killed = create_database(server, "killed")
        env = sync_env(killed, sandbox)
        kills: list[str] = []
        began = time.monotonic()
        for _ in range(args.kills):
            proc = start_sync(env, log)
            time.sleep(rng.uniform(0.15, 0.5) * clean_s)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                kills.append(f"{count(killed):,}")
        final_s = run_to_end(env, log)
        killed_s = time.monotonic() - began
        killed_ok = verdict(expected, fingerprint(killed))
        print(
            f"SIGKILL: {len(kills)} kills in {args.kills} attempts (events stored at each: "
            f"{', '.join(kills)}); "
            f"last run {final_s:.1f} s, total {killed_s:.1f} s; identical: {killed_ok}",
            flush=True,
        )

        restarted = create_database(server, "restarted")
        env = sync_env(restarted, sandbox, DB_MAX_RETRIES="10", DB_MAX_RETRY_DELAY="2000")
        began = time.monotonic()
        proc = start_sync(env, log)
        moments = sorted(rng.uniform(0.1, 0.7) * clean_s for _ in range(args.restarts))
        restarts: list[str] = []
        for moment in moments:
            time.sleep(max(0.0, began + moment - time.monotonic()))
            if proc.poll() is not None:
                break
            stored = count(restarted)
            server.restart()
            restarts.append(f"{stored:,}")
        code = proc.wait(timeout=3600)
        restarted_s = time.monotonic() - began
        restarted_ok = verdict(expected, fingerprint(restarted)) if code == 0 else f"exit {code}"
        print(
            f"DB restart: {len(restarts)} restarts (events stored at each: "
            f"{', '.join(restarts)}); run {restarted_s:.1f} s (exit {code}); "
            f"identical: {restarted_ok}",
            flush=True,
        )

    print()
    print("| check | events | disturbances | identical (counts + md5 of 12 tables) | time |")
    print("|---|---|---|---|---|")
    print(f"| undisturbed sync (baseline) | {truth:,} | none | — | {clean_s:.1f} s |")
    print(
        f"| SIGKILL at random moments, then a final run | {truth:,} | {len(kills)} kills "
        f"({args.kills} attempts; events stored at each: {', '.join(kills)}) "
        f"| {killed_ok} | {killed_s:.1f} s (last run {final_s:.1f} s) |"
    )
    print(
        f"| database server restarted mid-sync | {truth:,} | {len(restarts)} restarts "
        f"(events stored at each: {', '.join(restarts)}) "
        f"| {restarted_ok} | {restarted_s:.1f} s |"
    )
    ok = killed_ok == restarted_ok == "yes" and len(kills) > 0 and len(restarts) > 0
    return ok


async def sync_everything(
    conninfo: str, sandbox: SandboxServer, *, timeout_s: float
) -> tuple[float, list[tuple[str, str, int, int, int, int]]]:
    began = time.monotonic()
    async with (
        Database(conninfo, min_size=1, max_size=12) as db,
        KlaviyoClient(
            api_key=sandbox.api_key,
            base_url=sandbox.base_url,
            retry=replace(DEFAULT_RETRY, attempts=16, deadline_s=600),
            timeout_s=timeout_s,
        ) as client,
    ):
        service = DataSyncService(
            db,
            client,
            options=SyncOptions(events=EventSyncOptions(concurrency=8)),
            clock=lambda: sandbox_now(sandbox),
        )
        results = await service.sync_all()
    took = time.monotonic() - began
    return took, [
        (r.stream, r.status, r.api_calls, r.retries, r.rate_limited, r.errors) for r in results
    ]


def storm(args: argparse.Namespace) -> bool:
    store = StoreOptions(seed=args.seed, profiles=args.profiles, days=args.days)
    faults = FaultOptions(
        p429=0.20,
        p500=0.05,
        p503=0.05,
        p_timeout=0.05,
        timeout_s=10.0,
        p_malformed=0.02,
        p_reset=0.03,
        seed=args.seed,
    )
    client_timeout_s = 5.0
    assert faults.timeout_s > client_timeout_s
    work = Path(tempfile.mkdtemp(prefix="ka_storm_"))
    print(f"machine: {machine()}; work folder {work}", flush=True)
    base = SandboxConfig(store=store, api_key=API_KEY, rate_limits=False)
    with (
        EmbeddedPostgres(work / "pgdata") as server,
        SandboxServer(base) as calm,
        SandboxServer(replace(base, faults=faults)) as stormy,
    ):
        truth = calm.generator.count_events()
        clean = create_database(server, "clean")
        clean_s, clean_runs = asyncio.run(sync_everything(clean, calm, timeout_s=client_timeout_s))
        print(f"clean: {clean_s:.1f} s, {sum(r[2] for r in clean_runs)} calls", flush=True)
        disturbed = create_database(server, "storm")
        storm_s, storm_runs = asyncio.run(
            sync_everything(disturbed, stormy, timeout_s=client_timeout_s)
        )
        injected = sandbox_stats(stormy)["faults_injected"]
        identical = verdict(fingerprint(clean), fingerprint(disturbed))
        with psycopg.connect(disturbed) as conn:
            row = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE coalesce(reason, '') = '')"
                " FROM sync_quarantine"
            ).fetchone()
        quarantined, without_reason = (int(row[0]), int(row[1])) if row else (0, 0)

    calls = sum(r[2] for r in storm_runs)
    retries = sum(r[3] for r in storm_runs)
    limited = sum(r[4] for r in storm_runs)
    errors = sum(r[5] for r in storm_runs)
    succeeded = all(r[1] == "succeeded" for r in storm_runs + clean_runs)
    faults_text = ", ".join(f"{k}: {v}" for k, v in sorted(injected.items()))
    print()
    print(
        "| run | events | streams succeeded | API calls | retries | 429s | other errors "
        "| quarantined (without reason) | identical | time |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(
        f"| clean (baseline) | {truth:,} | {sum(r[1] == 'succeeded' for r in clean_runs)}"
        f"/{len(clean_runs)} | {sum(r[2] for r in clean_runs):,} | "
        f"{sum(r[3] for r in clean_runs)} | {sum(r[4] for r in clean_runs)} | "
        f"{sum(r[5] for r in clean_runs)} | — | — | {clean_s:.1f} s |"
    )
    print(
        f"| storm | {truth:,} | {sum(r[1] == 'succeeded' for r in storm_runs)}/{len(storm_runs)}"
        f" | {calls:,} | {retries:,} | {limited:,} | {errors:,} | {quarantined} "
        f"({without_reason}) | {identical} | {storm_s:.1f} s |"
    )
    print(f"\ninjected by the sandbox: {faults_text}")
    return (
        succeeded
        and identical == "yes"
        and without_reason == 0
        and retries == limited + errors
        and retries > 0
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_crash = sub.add_parser("crash", help="SIGKILL and database restarts during a big sync")
    p_crash.add_argument("--profiles", type=int, default=15_000)
    p_crash.add_argument("--days", type=int, default=90)
    p_crash.add_argument("--kills", type=int, default=4)
    p_crash.add_argument("--restarts", type=int, default=2)
    p_crash.add_argument("--seed", type=int, default=20261122)
    p_storm = sub.add_parser("storm", help="a full sync through a fault storm")
    p_storm.add_argument("--profiles", type=int, default=2_000)
    p_storm.add_argument("--days", type=int, default=60)
    p_storm.add_argument("--seed", type=int, default=20261122)
    args = parser.parse_args()
    commands: dict[str, Callable[[argparse.Namespace], bool]] = {"crash": crash, "storm": storm}
    ok = commands[args.command](args)
    print(f"\n{args.command}: {'PASS' if ok else 'FAIL'} ({time.strftime('%Y-%m-%d')})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
