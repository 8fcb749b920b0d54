"""Benchmark: the customer analytics reads at scale, from stored facts (no HTTP, no cache).

    python bench/bench_customers.py [--profiles 200000] [--days 365] [--runs 10]

Loads the sandbox customer model's orders (campaigns and flows off) straight into
`fact_orders` and their Ordered Product lines into `fact_order_lines` of a scratch database
(fresh embedded PostgreSQL, or DATABASE_URL's server), builds the customer and product facts
from them as `analytics rebuild` does (`rebuild_customer_facts`, timed; then VACUUM ANALYZE,
as autovacuum would), fits and stores CLV (timed), then times
each read the endpoints make — cohorts, RFM summary, RFM profiles page, products, CLV summary
and CLV profiles page — p50/p95 over `--runs` runs after one warm-up. The funnel's fact is
built from events, which this run does not generate: bench_funnel.py measures it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).parent))
from scratch import scratch_database, server_label

from klaviyo_analytics.analytics import clv, customers, products
from klaviyo_analytics.analytics.customer_facts import CUSTOMER_FACT_TABLES, rebuild_customer_facts
from klaviyo_analytics.analytics.periods import DateRange
from klaviyo_analytics.db.pool import Conn, Database, StatementTimeoutError
from klaviyo_analytics.sandbox import catalog as c
from klaviyo_analytics.sandbox.config import StoreOptions
from klaviyo_analytics.sandbox.customers import CATALOGUE
from klaviyo_analytics.sandbox.generator import DAY, StoreGenerator

TZ = "America/New_York"


def load(conninfo: str, store: StoreGenerator) -> tuple[int, int]:
    zone = ZoneInfo(TZ)
    orders = lines = 0
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        with cur.copy('COPY fact_orders (order_id, "timestamp", date, profile_id, value,'
                      " channel, attribution) FROM STDIN") as o_copy:  # fmt: skip
            for day in range(store.start_ts // DAY, store.end_ts // DAY + 1):
                ev = store.day(day)
                keep = (ev.metric == c.PLACED_ORDER) & (ev.profile >= 0) & (ev.ts <= store.end_ts)
                for n, ts, who, cents in zip(ev.id[keep].tolist(), ev.ts[keep].tolist(),
                                             ev.profile[keep].tolist(), ev.value[keep].tolist(),
                                             strict=True):  # fmt: skip
                    moment = datetime.fromtimestamp(ts, UTC)
                    o_copy.write_row((f"{n:012x}", moment, moment.astimezone(zone).date(),
                                      store.catalog.profile_id(who), cents / 100,
                                      "unattributed", "none"))  # fmt: skip
                    orders += 1
        with cur.copy(
            'COPY fact_order_lines (order_id, "timestamp", line, date, profile_id,'
            " product_id, sku, product_name, quantity, row_total) FROM STDIN"
        ) as l_copy:
            for day in range(store.start_ts // DAY, store.end_ts // DAY + 1):
                ev = store.day(day)
                keep = (ev.metric == c.ORDERED_PRODUCT) & (ev.profile >= 0)
                keep &= ev.ts <= store.end_ts
                for k, (attr, ts, who, product, cents) in enumerate(zip(
                        ev.attr[keep].tolist(), ev.ts[keep].tolist(), ev.profile[keep].tolist(),
                        ev.aux[keep].tolist(), ev.value[keep].tolist(), strict=True)):  # fmt: skip
                    p = CATALOGUE[product]
                    moment = datetime.fromtimestamp(ts, UTC)
                    l_copy.write_row((f"{attr:012x}", moment, k, moment.astimezone(zone).date(),
                                      store.catalog.profile_id(who), p.product_id, p.sku, p.name,
                                      cents // p.price_cents, cents / 100))  # fmt: skip
                    lines += 1
    return orders, lines


async def build_facts(conninfo: str) -> None:
    async with Database(conninfo, min_size=1, max_size=1, statement_timeout_ms=0) as db:
        await db.run(rebuild_customer_facts)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for table in ("fact_orders", "fact_order_lines", *CUSTOMER_FACT_TABLES):
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(conninfo: str, today: date, runs: int) -> list[tuple[str, float, float]]:
    async with Database(conninfo, min_size=1, max_size=2) as db:
        started = time.perf_counter()
        summary = await clv.fit_and_store(db.run, timezone=TZ,
                                          now=datetime.combine(today, datetime.min.time(), UTC)
                                          + timedelta(hours=23))  # fmt: skip
        print(f"CLV fit and store: {time.perf_counter() - started:.1f} s ({summary})")
        model = await db.run(clv.stored_model)
        assert model is not None
        year = DateRange(today - timedelta(days=364), today)
        quarter = DateRange(today - timedelta(days=89), today)
        reads: list[tuple[str, Callable[[Conn], Awaitable[Any]]]] = [
            ("cohorts (365 days)", lambda conn: customers.cohorts(conn, year, today)),
            ("rfm", lambda conn: customers.rfm(conn, today)),
            ("rfm/profiles (100)", lambda conn: customers.rfm_profiles(
                conn, today, group=None, limit=100, offset=0)),
            ("products (90 days)", lambda conn: products.products(conn, quarter)),
            ("products (365 days)", lambda conn: products.products(conn, year)),
            ("clv (totals + top 10)", lambda conn: _clv(conn, model.id)),
            ("clv/profiles (100)", lambda conn: clv.stored_profiles(
                conn, model.id, limit=100, offset=0)),
        ]  # fmt: skip
        out = []
        for name, read in reads:
            times = []
            try:
                await db.run(read, readonly=True)
                for _ in range(runs):
                    t = time.perf_counter()
                    await db.run(read, readonly=True)
                    times.append((time.perf_counter() - t) * 1000)
            except StatementTimeoutError:
                out.append((name, float("inf"), float("inf")))  # over the 30 s statement timeout
                continue
            out.append((name, statistics.median(times), percentile(times, 0.95)))
        return out


async def _clv(conn: Conn, model_id: int) -> Any:
    return await clv.stored_totals(conn, model_id), await clv.stored_profiles(
        conn, model_id, limit=10, offset=0
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profiles", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    store = StoreGenerator(StoreOptions(seed=29, profiles=args.profiles, days=args.days,
                                        campaigns=0, flows=0))  # fmt: skip
    today = datetime.fromtimestamp(store.end_ts, UTC).astimezone(ZoneInfo(TZ)).date()
    with scratch_database("bench_customers") as conninfo:
        started = time.perf_counter()
        orders, lines = load(conninfo, store)
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores,"
              f" load {os.getloadavg()[0]:.1f}; {server_label()}")  # fmt: skip
        print(f"loaded {orders:,} orders and {lines:,} lines of {args.profiles:,} profiles in"
              f" {time.perf_counter() - started:.0f} s")  # fmt: skip
        started = time.perf_counter()
        asyncio.run(build_facts(conninfo))
        print(f"customer and product facts built in {time.perf_counter() - started:.1f} s")
        results = asyncio.run(run(conninfo, today, args.runs))
    print("| read | p50 | p95 |")
    print("|---|---|---|")
    for name, p50, p95 in results:
        print(f"| {name} | {p50:.0f} ms | {p95:.0f} ms |")


if __name__ == "__main__":
    main()
