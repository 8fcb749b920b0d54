"""Benchmark: event backfill from the sandbox with its rate limits on and latency per page.

    python bench/bench_sync.py [--profiles 20000] [--days 60] [--latency-ms 250]
                               [--concurrency 24] [--sequential-seconds 30] [--no-airbyte]

In one run, against one sandbox (its own process, rate limits on, `--latency-ms` added to
every request) and a fresh embedded PostgreSQL:
  (a) our backfill end to end: `klaviyo-analytics sync events` in a child process, after
      `sync metrics` and `sync profiles`, from an empty database, including the refresh of
      the pre-aggregates and the facts (its seconds are read from the sync's log);
  (e) Airbyte's `source-klaviyo` 2.13.1 `read` of its `events` stream (full refresh, weekly
      slices read concurrently with the connector's default of 10 workers, no destination),
      installed in a scratch venv by tests/conformance/airbyte.py; records counted;
  (b) a single sequential cursor over the same events (one `iter_events`), events/s;
  (c) the rate-limit ceiling: 1000 events x 3500 pages/min = 58,333 events/s;
  (d) the machine's ingest ceiling: raw COPY of the pages fetched in (b) into an empty copy
      of klaviyo_events, rows/s.
Our backfill also runs on a quarter and a half of the history: peak RSS of the sync process at
3 sizes shows memory stays flat as N grows. CPU per process kind is sampled during (a).
Targets (issue 17): (a) >= 3x (e); refresh <= 20 % of (a)'s wall time; sync process +
PostgreSQL <= 100 ms CPU per 1,000 events; peak RSS flat and <= 300 MB. The load average is
printed with the figures: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psutil
import psycopg
from psycopg.conninfo import make_conninfo

from klaviyo_analytics.db import databases
from klaviyo_analytics.db.embedded import EmbeddedPostgres
from klaviyo_analytics.db.migrate import migrate
from klaviyo_analytics.db.repos.base import adapt
from klaviyo_analytics.db.repos.events import EventRepository
from klaviyo_analytics.klaviyo import KlaviyoClient
from klaviyo_analytics.sync import mapping

# The Airbyte install is shared with the conformance test (tests/ is not an installed package).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scratch import start_sandbox
from tests.conformance.airbyte import install as install_airbyte

API_KEY = "pk_bench_0123456789abcdef"
RATE_CEILING = 1000 * 3500 / 60
REFRESHED = re.compile(rb"refreshed (\d+) range\(s\) of events in ([0-9.]+) s")


def start_store(args: argparse.Namespace, end: datetime) -> tuple[subprocess.Popen[bytes], str]:
    return start_sandbox(
        "--profiles", str(args.profiles), "--days", str(args.days), "--api-key", API_KEY,
        "--latency-ms", str(args.latency_ms), "--end", end.isoformat(), "--rate-limits",
    )  # fmt: skip


async def sequential(url: str, seconds: float) -> tuple[float, list[list[object]]]:
    """Page through events with one cursor for `seconds`; return events/s and the rows."""
    rows: list[list[object]] = []
    repo = EventRepository()
    async with KlaviyoClient(api_key=API_KEY, base_url=url) as client:
        started = time.perf_counter()
        pages = client.iter_events(include=("attributions",))
        async for page in pages:
            rows.extend(
                [adapt(getattr(mapping.event(e, {}), c)) for c in repo.columns]
                for e in page.records
            )
            if time.perf_counter() - started >= seconds:
                break
        await pages.aclose()  # type: ignore[attr-defined]
        elapsed = time.perf_counter() - started
    return len(rows) / elapsed, rows


def copy_ceiling(conninfo: str, rows: list[list[object]]) -> float:
    with psycopg.connect(conninfo) as conn:
        conn.execute("CREATE TABLE bench_copy (LIKE klaviyo_events INCLUDING ALL)")
        conn.commit()
        repo = EventRepository()
        started = time.perf_counter()
        for i in range(0, len(rows), 1000):
            with conn.cursor().copy(
                f"COPY bench_copy ({', '.join(repo.columns)}) FROM STDIN"
            ) as copy:  # type: ignore[arg-type]
                for row in rows[i : i + 1000]:
                    copy.write_row(row)
            conn.commit()
        return len(rows) / (time.perf_counter() - started)


class CpuMeter:
    """CPU seconds used by the sandbox, the sync process and PostgreSQL's processes, and by the
    whole machine, between `start` and the last `sample`. Backends that exit take their CPU
    time with them, so every process is sampled while it lives and its last figure is kept."""

    def __init__(self, sandbox_pid: int, postmaster_pid: int) -> None:
        self._sandbox = psutil.Process(sandbox_pid)
        self._postmaster = psutil.Process(postmaster_pid)
        self._seen: dict[tuple[str, int], float] = {}
        self._base: dict[tuple[str, int], float] = {}
        self._machine0 = self._machine()
        self.machine = 0.0

    @staticmethod
    def _machine() -> float:
        t = psutil.cpu_times()
        return float(t.user + t.system + getattr(t, "nice", 0.0))

    @staticmethod
    def _cpu(proc: psutil.Process) -> float:
        t = proc.cpu_times()
        return float(t.user + t.system)

    def start(self, sync: psutil.Process) -> None:
        self._machine0 = self._machine()
        self._sample(sync, base=True)

    def sample(self, sync: psutil.Process) -> None:
        self._sample(sync, base=False)
        self.machine = self._machine() - self._machine0

    def _sample(self, sync: psutil.Process, *, base: bool) -> None:
        procs = [("sandbox", self._sandbox), ("sync", sync), ("postgres", self._postmaster)]
        procs += [(self._pg_role(c), c) for c in self._postmaster.children()]
        for role, proc in procs:
            try:
                used = self._cpu(proc)
            except psutil.Error:
                continue
            key = (role, proc.pid)
            if base:
                self._base[key] = used
            self._seen[key] = used

    @staticmethod
    def _pg_role(proc: psutil.Process) -> str:
        """Return the role of a PostgreSQL process from its title: `postgres` for the backends
        serving queries, `postgres autovacuum`, or `postgres background` (checkpointer, WAL
        writer, background writer)."""
        try:
            title = " ".join(proc.cmdline())
        except psutil.Error:
            return "postgres"
        if "autovacuum" in title:
            return "postgres autovacuum"
        for kind in ("checkpointer", "walwriter", "background writer"):
            if kind in title:
                return "postgres background"
        return "postgres"

    def by_role(self) -> dict[str, float]:
        out: dict[str, float] = {"sandbox": 0.0, "sync": 0.0, "postgres": 0.0}
        for (role, pid), used in self._seen.items():
            out[role] = out.get(role, 0.0) + used - self._base.get((role, pid), 0.0)
        return out


def postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])


def run_sync(
    conninfo: str, url: str, concurrency: int, since: datetime | None, meter: CpuMeter
) -> tuple[float, int, int, float]:
    """Sync metrics and profiles, then time `sync events` in a child process (the order `sync
    all` uses, so events rarely need stub profiles); return (seconds, events stored, peak RSS
    bytes, seconds the refresh took). `meter` records the CPU the sandbox, the sync and
    PostgreSQL used meanwhile."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "KLAVIYO_"))}
    env.update(
        DATABASE_URL=conninfo,
        KLAVIYO_API_KEY=API_KEY,
        KLAVIYO_BASE_URL=url,
        SYNC_CONCURRENCY=str(concurrency),
        LOG_LEVEL="INFO",
    )
    for stream in ("metrics", "profiles"):
        subprocess.run(
            [sys.executable, "-m", "klaviyo_analytics.cli", "sync", stream],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    cmd = [sys.executable, "-m", "klaviyo_analytics.cli", "sync", "events"]
    if since is not None:
        cmd += ["--since", since.isoformat()]
    # The child's log goes to a file: a pipe nobody drains while we sample memory would fill
    # and block the child on its next log line.
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        proc = psutil.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
        meter.start(proc)
        peak = 0
        while proc.poll() is None:
            try:
                peak = max(peak, proc.memory_info().rss)
                meter.sample(proc)
            except psutil.NoSuchProcess:
                break
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        log.seek(0)
        text = log.read()
        if proc.returncode != 0:
            raise SystemExit(f"sync failed: {text.decode()[-2000:]}")
    refresh = sum(float(m.group(2)) for m in REFRESHED.finditer(text))
    with psycopg.connect(conninfo) as conn:
        stored = conn.execute("SELECT count(*) FROM klaviyo_events").fetchone()
    return elapsed, int(stored[0]) if stored else 0, peak, refresh


def airbyte_read(url: str, start: datetime) -> tuple[float, int, list[str]]:
    """Read the `events` stream with Airbyte's connector from `start`; return (seconds,
    records, error messages). Only `read` is timed (after `discover` gave the catalog)."""
    entry = str(install_airbyte())
    with tempfile.TemporaryDirectory() as tmp:
        config, catalog = Path(tmp) / "config.json", Path(tmp) / "catalog.json"
        config.write_text(json.dumps({
            "api_key": API_KEY, "start_date": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "url_base": f"{url}/api/", "num_workers": 10,
        }))  # fmt: skip
        found = subprocess.run(
            [entry, "discover", "--config", str(config)],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        streams = next(
            json.loads(line)["catalog"]["streams"]
            for line in found.stdout.splitlines()
            if line.startswith("{") and '"CATALOG"' in line
        )
        events = next(s for s in streams if s["name"] == "events")
        catalog.write_text(json.dumps({"streams": [
            {"stream": events, "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"}
        ]}))  # fmt: skip
        records, errors = 0, []
        started = time.perf_counter()
        with subprocess.Popen(
            [entry, "read", "--config", str(config), "--catalog", str(catalog)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        ) as proc:  # fmt: skip
            assert proc.stdout is not None
            for line in proc.stdout:
                head = line[:40]
                if '"RECORD"' in head:
                    records += 1
                elif '"TRACE"' in head and '"ERROR"' in line:
                    errors.append(line[:300])
        elapsed = time.perf_counter() - started
    return elapsed, records, errors


def fresh_database(admin: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    databases.create_database(admin, name)
    target = make_conninfo(admin, dbname=name)
    asyncio.run(migrate(target))
    return target


def load_average() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profiles", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--latency-ms", type=int, default=250)
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument("--sequential-seconds", type=float, default=30)
    parser.add_argument("--no-airbyte", action="store_true", help="leave out (e)")
    args = parser.parse_args()
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    sandbox, url = start_store(args, end)
    loads: dict[str, str] = {"start": load_average()}
    try:
        stats = httpx.get(f"{url}/admin/stats", timeout=120).json()
        total = int(stats["events"])
        with tempfile.TemporaryDirectory() as tmp, EmbeddedPostgres(Path(tmp) / "pgdata") as pg:
            admin = pg.conninfo()
            master = postmaster_pid(Path(tmp) / "pgdata")
            sizes = []
            for share in (4, 2):
                since = end - timedelta(days=args.days // share)
                t, n, rss, _ = run_sync(
                    fresh_database(admin), url, args.concurrency, since,
                    CpuMeter(sandbox.pid, master),
                )  # fmt: skip
                sizes.append((n, t, rss))
            meter = CpuMeter(sandbox.pid, master)
            loads["(a)"] = load_average()
            f_time, f_events, f_rss, refresh = run_sync(
                fresh_database(admin), url, args.concurrency, None, meter
            )
            loads["after (a)"] = load_average()
            sizes.append((f_events, f_time, f_rss))
            airbyte = None
            if not args.no_airbyte:
                start = datetime.fromisoformat(str(stats["start"]).replace("Z", "+00:00"))
                airbyte = airbyte_read(url, start - timedelta(days=1))
                loads["after (e)"] = load_average()
            seq_rate, rows = asyncio.run(sequential(url, args.sequential_seconds))
            copy_rate = copy_ceiling(fresh_database(admin), rows)
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=30)
    ours = f_events / f_time
    ceiling = min(RATE_CEILING, copy_rate)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}"
    )
    print("load average (1/5/15 min): " + "; ".join(f"{k} {v}" for k, v in loads.items()))
    print(
        f"store: {args.profiles:,} profiles, {args.days} days, {total:,} events; latency {args.latency_ms} ms/request, rate limits on; concurrency {args.concurrency}"
    )
    print(
        f"(a) our backfill, end to end: {f_events:,} events in {f_time:.1f} s = {ours:,.0f} events/s (stored == sandbox: {f_events == total})"
    )
    print(
        f"    of which the refresh of aggregates and facts: {refresh:.1f} s = {100 * refresh / f_time:.0f} % (target <= 20 %); fetch + store {f_events / (f_time - refresh):,.0f} events/s"
    )
    if airbyte is not None:
        a_time, a_events, a_errors = airbyte
        print(
            f"(e) Airbyte read of events: {a_events:,} records in {a_time:.1f} s = {a_events / a_time:,.0f} events/s; counts agree: {a_events == f_events}; errors: {len(a_errors)} {a_errors[:2]}"
        )
        print(f"(a)/(e) = {ours / (a_events / a_time):.2f}x (target >= 3x)")
    print(f"(b) sequential cursor:   {seq_rate:,.0f} events/s over {len(rows):,} events")
    print(f"(c) rate-limit ceiling:  {RATE_CEILING:,.0f} events/s")
    print(f"(d) raw COPY ceiling:    {copy_rate:,.0f} rows/s")
    print(f"(a)/(b) = {ours / seq_rate:.1f}x; (a)/min(c,d) = {100 * ours / ceiling:.0f}%")
    for n, t, rss in sizes:
        print(
            f"size {n:,} events: {t:.1f} s = {n / t:,.0f} events/s, peak RSS of the sync {rss / 2**20:.0f} MiB"
        )
    # Where the machine's CPU went during (a): if the cores were busy, (a) is bound by the
    # machine, and the budget per 1,000 events says what a faster run would have to cut.
    cores = os.cpu_count() or 1
    roles = meter.by_role()
    per_k = {role: 1_000_000 * used / f_events for role, used in roles.items()}
    ours_k = sum(ms for role, ms in per_k.items() if role != "sandbox")
    print(
        f"CPU during (a): machine {100 * meter.machine / (f_time * cores):.0f}% of {cores} cores; "
        + ", ".join(f"{role} {used:.0f} s" for role, used in roles.items())
    )
    print(
        "CPU ms per 1,000 events: "
        + ", ".join(f"{role} {ms:.0f}" for role, ms in per_k.items())
        + f"; sync + PostgreSQL {ours_k:.0f} (target <= 100); all {sum(per_k.values()):.0f}"
        f" -> machine bound {cores * 1000 * 1000 / sum(per_k.values()):,.0f} events/s on {cores} cores"
    )


if __name__ == "__main__":
    main()
