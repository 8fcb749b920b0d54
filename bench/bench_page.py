"""Benchmark: the dashboard's first render with data, in headless Chromium, on localhost.

    python bench/bench_page.py [--events 2000000] [--runs 15] [--range last-30-days]

Runs on a fresh embedded PostgreSQL (or DATABASE_URL's server, in a scratch database dropped at
the end). Data: bench/bench_overview.py's generator, straight into the tables with SQL: `--events`
events over 400 days, 200,000 profiles, 100 campaigns, 5 flows, then the pre-aggregates and the
facts are rebuilt. The whole app (`create_app`) is served by uvicorn on 127.0.0.1, exactly as
`klaviyo-analytics serve` does, and Debian's chromium (Playwright, `/usr/bin/chromium`) opens
the page with an admin key in local storage.

Each run: the API's answer cache is cleared (POST /api/cache/clear), a new browser context (empty
HTTP cache) opens `/`, and we record

* KPIs visible: from navigation start to the first frame painted with the KPI cards filled
  (the page's `kpis-visible` performance mark, set in the frame after they are rendered);
* page complete: navigation start to every panel (charts, table, sync) having left its
  loading state, measured from Python (includes Playwright's round trips).

One warm-up run is reported separately (the server's first requests open pool connections).
Target: KPIs visible p95 <= 1.5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scratch import scratch_database
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, DESKTOP
from tests.e2e.live import create_keys, serve_dashboard

from bench.bench_overview import TZ, load, percentile
from klaviyo_analytics.config import Settings

PANELS = ("overview", "revenue", "distribution", "engagement", "top", "table", "health", "sync")


def one_run(browser: Any, base_url: str, key: str, preset: str) -> tuple[float, float]:
    """Open the page once; return (KPIs visible ms, page complete ms)."""
    httpx.post(
        f"{base_url}/api/cache/clear", headers={"Authorization": f"Bearer {key}"}, timeout=30
    ).raise_for_status()
    context = browser.new_context(viewport=DESKTOP, locale="en-US")
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.add_init_script(f"localStorage.setItem('klaviyo-analytics.api-key', {key!r})")
        started = time.perf_counter()
        page.goto(f"{base_url}/#range={preset}", wait_until="commit")
        page.wait_for_selector('[data-panel="overview"][data-state="ready"]', state="attached")
        page.wait_for_selector('body[data-loading="false"]', state="attached")
        for panel in PANELS:
            page.wait_for_selector(
                f'[data-panel="{panel}"]:not([data-state="loading"])', state="attached"
            )
        complete_ms = (time.perf_counter() - started) * 1000
        marks = page.evaluate("performance.getEntriesByName('kpis-visible').map(e => e.startTime)")
        assert marks, "the page set no kpis-visible mark"
        assert page.get_attribute('[data-panel="overview"]', "data-state") == "ready"
        return float(marks[0]), complete_ms
    finally:
        context.close()


def measure(conninfo: str, runs: int, preset: str) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    admin, _ = create_keys(conninfo)
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(
            data_home=Path(home),
            account_timezone=TZ,
            api_rate_limit_per_minute=1_000_000,
            min_free_disk_mb=0,
        )
        with (
            serve_dashboard(settings, conninfo) as server,
            sync_playwright() as p,
        ):
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            warm = one_run(browser, server.base_url, admin, preset)
            kpis, complete = [], []
            for i in range(runs):
                k, c = one_run(browser, server.base_url, admin, preset)
                kpis.append(k)
                complete.append(c)
                print(
                    f"  run {i + 1}: KPIs visible {k:.0f} ms, page complete {c:.0f} ms", flush=True
                )
            browser.close()
    return {"warm_up": warm, "kpis": kpis, "complete": complete}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--range", default="last-30-days", dest="preset")
    args = parser.parse_args()
    with scratch_database("bench_page") as target:
        took = asyncio.run(load(target, args.events))
        print(took, flush=True)
        result = measure(target, args.runs, args.preset)
    kpis, complete = result["kpis"], result["complete"]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"events: {args.events:,}; generate {took['generate_s']:.0f} s, aggregates "
          f"{took['aggregates_s']:.0f} s, facts rebuild {took['facts_s']:.0f} s")  # fmt: skip
    print(
        "| range | runs | KPIs visible p50 | p95 | max | page complete p50 | p95 | warm-up KPIs |"
    )
    print(f"| {args.preset} | {len(kpis)} | {statistics.median(kpis):.0f} ms | "
          f"{percentile(kpis, 0.95):.0f} ms | {max(kpis):.0f} ms | {statistics.median(complete):.0f} ms | "
          f"{percentile(complete, 0.95):.0f} ms | {result['warm_up'][0]:.0f} ms |")  # fmt: skip


if __name__ == "__main__":
    main()
