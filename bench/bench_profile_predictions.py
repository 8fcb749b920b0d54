"""Benchmark: what Klaviyo's predictive analytics cost the profiles sync (issue 19).

    python bench/bench_profile_predictions.py [--profiles 20000] [--days 90] [--repeat 2]

Starts the sandbox (its own process, like the real API elsewhere) and syncs the profiles stream
into a scratch database (fresh embedded PostgreSQL, or DATABASE_URL's server), from scratch each
time (`full`, table emptied first), alternating between the stream as it is (asking for
`additional-fields[profile]=predictive_analytics`) and the same stream with that field left
out (a client whose `iter_profiles` never asks for it: the baseline), in the same run:

* rate limits off on both sides (`--repeat` times each): the CPU and payload cost;
* rate limits on on both sides (once each): what the lower limits of predictive requests
  (10/s, 150/m instead of 75/s, 750/m) cost in wall time.

Prints, per run, the seconds, the requests (API calls, 429s) and the bytes of one page.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg

sys.path.insert(0, os.path.dirname(__file__))
from scratch import scratch_database, server_label, start_sandbox

from klaviyo_analytics import wiring
from klaviyo_analytics.db.pool import Database
from klaviyo_analytics.klaviyo import KlaviyoClient, Page, Profile
from klaviyo_analytics.sync.runner import StreamResult, SyncOptions

API_KEY = "pk_bench_predictions"
REVISION = "2026-07-15"


class WithoutPredictions(KlaviyoClient):
    """The baseline: the same client, never asking for predictive analytics."""

    def iter_profiles(
        self, updated_after: datetime | None = None, *, predictive_analytics: bool = True
    ) -> AsyncIterator[Page[Profile]]:
        return super().iter_profiles(updated_after, predictive_analytics=False)


def start_store(profiles: int, days: int, limits: bool) -> tuple[subprocess.Popen[bytes], str]:
    return start_sandbox(
        "--profiles", str(profiles), "--days", str(days), "--api-key", API_KEY,
        "--rate-limits" if limits else "--no-rate-limits", wait_s=240,
    )  # fmt: skip


def page_bytes(url: str, predictive: bool) -> int:
    params = {"page[size]": "100", "sort": "updated"}
    if predictive:
        params["additional-fields[profile]"] = "predictive_analytics"
    headers = {"Authorization": f"Klaviyo-API-Key {API_KEY}", "revision": REVISION}
    for _ in range(20):
        response = httpx.get(f"{url}/api/profiles", params=params, headers=headers, timeout=60)
        if response.status_code != 429:
            return len(response.content)
        time.sleep(float(response.headers.get("Retry-After", "1")))
    raise SystemExit("the sandbox kept refusing the page")


async def sync_once(conninfo: str, url: str, predictive: bool, limits: bool) -> StreamResult:
    with psycopg.connect(conninfo) as conn:
        conn.execute("TRUNCATE klaviyo_profiles CASCADE")
        conn.execute("DELETE FROM sync_state WHERE stream = 'profiles'")
    kind = KlaviyoClient if predictive else WithoutPredictions
    async with (
        Database(conninfo, min_size=1, max_size=4) as db,
        kind(api_key=API_KEY, base_url=url, rate_limits_enabled=limits) as client,
    ):
        service = wiring.sync_service(db, client, options=SyncOptions(),
                                      clock=lambda: datetime.now(UTC))  # fmt: skip
        result = await service.run("profiles", full=True)
    if result.status != "succeeded":
        raise SystemExit(f"the profiles sync failed: {result.error}")
    return result


def load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--profiles", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {platform.machine()}, {os.cpu_count()} cores;"
          f" {args.profiles:,} profiles, {args.days} days; {server_label()}")  # fmt: skip
    rows: list[list[Any]] = []
    sizes: dict[bool, int] = {}
    with scratch_database("bench_predictions") as conninfo:
        for limits in (False, True):
            proc, url = start_store(args.profiles, args.days, limits)
            try:
                for _ in range(1 if limits else args.repeat):
                    for predictive in (False, True):
                        before = load()
                        result = asyncio.run(sync_once(conninfo, url, predictive, limits))
                        rows.append([
                            "on" if limits else "off",
                            "with predictions" if predictive else "without (baseline)",
                            result.duration_s, result.api_calls, result.rate_limited,
                            result.fetched, predictive, before,
                        ])  # fmt: skip
                        print(*rows[-1], sep=" | ", flush=True)
                # Measured after the syncs: a request of its own would count against the
                # limits the syncs are timed under.
                if not limits:
                    sizes = {p: page_bytes(url, p) for p in (False, True)}
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    print(
        "\n| rate limits | profiles stream | seconds | API calls | 429s | profiles | bytes/page"
        " | load before |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for limits_on, mode, seconds, calls, limited, fetched, predictive, before in rows:
        print(
            f"| {limits_on} | {mode} | {seconds:.1f} | {calls:,} | {limited} | {fetched:,} |"
            f" {sizes[predictive]:,} | {before} |"
        )


if __name__ == "__main__":
    main()
