"""Benchmark: the overview KPIs from the facts vs the same answer from raw events.

    python bench/bench_overview.py [--events 5000000] [--runs 20]

Runs on a fresh embedded PostgreSQL (or DATABASE_URL's server, in a scratch database, dropped
at the end). It generates `--events` events straight into `klaviyo_events` with one
`INSERT ... SELECT FROM generate_series` per million (400 days: email and SMS sends, opens,
clicks, bounces, orders of which 40 % carry Klaviyo's attribution, refunds, forms, product
views; 200,000 profiles, 100 campaigns, 5 flows), then rebuilds the pre-aggregates and the facts
(`AggregateRepository.refresh`, `rebuild_facts`), then measures, in the same run and for ranges
of 30, 90 and 365 days ending today (America/New_York):

* candidate: `analytics.kpis.overview` through the pool (range and previous range);
* baseline: one SQL statement over raw events giving the same figures (revenue, refunds,
  orders, unique customers, form submissions, email open rate, click rate and conversion rate
  with first-touch uniques and the last-touch fallback), for the range and the previous range.

Both answers are compared (they must be equal) before timing. p50/p95 over `--runs` runs each
after one warm-up. Target: overview p95 <= 100 ms and >= 20x faster than raw.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from scratch import scratch_database

from klaviyo_analytics.analytics.facts import rebuild_facts
from klaviyo_analytics.analytics.kpis import Overview, overview, ratio
from klaviyo_analytics.analytics.periods import DateRange, local_today
from klaviyo_analytics.db.pool import Conn, Database
from klaviyo_analytics.db.repos.aggregates import AggregateRepository

TZ = "America/New_York"
CHUNK = 1_000_000
METRICS = (
    "Received Email", "Opened Email", "Clicked Email", "Bounced Email", "Received SMS",
    "Clicked SMS", "Viewed Product", "Placed Order", "Refunded Order", "Viewed Form",
    "Submitted Form", "Started Checkout", "Unsubscribed",
)  # fmt: skip

SETUP = [
    "INSERT INTO klaviyo_metrics (id, name, integration_name)"
    " SELECT 'm' || i, n, 'Klaviyo' FROM unnest(%(names)s::text[]) WITH ORDINALITY AS t(n, i)",
    "INSERT INTO klaviyo_profiles (id, email, created)"
    " SELECT 'p' || g, 'p' || g || '@example.com', now() - random() * interval '800 days'"
    " FROM generate_series(1, %(profiles)s) g",
    "INSERT INTO klaviyo_campaigns (id, name, channel, send_time)"
    " SELECT 'c' || g, 'Campaign ' || g, CASE WHEN g %% 4 = 0 THEN 'sms' ELSE 'email' END,"
    " now() - g * interval '4 days' FROM generate_series(1, 100) g",
    "INSERT INTO klaviyo_campaign_messages (id, campaign_id, channel)"
    " SELECT 'cm' || g, 'c' || g, CASE WHEN g %% 4 = 0 THEN 'sms' ELSE 'email' END"
    " FROM generate_series(1, 100) g",
    "INSERT INTO klaviyo_flows (id, name, status) SELECT 'f' || g, 'Flow ' || g, 'live'"
    " FROM generate_series(1, 5) g",
    "INSERT INTO klaviyo_flow_actions (id, flow_id) SELECT 'a' || g, 'f' || g"
    " FROM generate_series(1, 5) g",
    "INSERT INTO klaviyo_flow_messages (id, flow_action_id, flow_id, name, channel)"
    " SELECT 'fm' || g || c, 'a' || g, 'f' || g, 'Flow ' || g || ' ' || c,"
    " CASE c WHEN 'e' THEN 'email' ELSE 'sms' END"
    " FROM generate_series(1, 5) g CROSS JOIN (VALUES ('e'), ('s')) v(c)",
]
# Metric by a uniform draw r; message events name a campaign (2/3) or a flow message (1/3)
# of their medium; 40 % of orders carry Klaviyo's attribution.
EVENTS = """
INSERT INTO klaviyo_events (id, "timestamp", metric_id, profile_id, value, properties,
  attributed_source_type, attributed_source_id, attributed_message_id)
SELECT 'e' || g, ts, 'm' || metric, 'p' || (1 + (hashint %% %(profiles)s)),
  CASE WHEN metric IN (8, 9, 12) THEN round((20 + random() * 280)::numeric, 2) END,
  CASE metric WHEN 8 THEN jsonb_build_object('$event_id', 'o' || g)
              WHEN 9 THEN jsonb_build_object('OrderId', 'o' || (g - 997))
              WHEN 10 THEN jsonb_build_object('form_id', 'form' || (g %% 3))
              WHEN 11 THEN jsonb_build_object('form_id', 'form' || (g %% 3))
              ELSE '{}'::jsonb END,
  CASE WHEN message THEN CASE WHEN g %% 3 = 0 THEN 'flow' ELSE 'campaign' END END,
  CASE WHEN message THEN CASE WHEN g %% 3 = 0 THEN 'f' || (1 + g %% 5)
       WHEN sms THEN 'c' || (4 * (g %% 25) + 4) ELSE 'c' || (4 * (g %% 25) + 1 + g %% 3) END END,
  CASE WHEN message THEN CASE WHEN g %% 3 = 0 THEN 'fm' || (1 + g %% 5) || CASE WHEN sms THEN 's' ELSE 'e' END
       WHEN sms THEN 'cm' || (4 * (g %% 25) + 4) ELSE 'cm' || (4 * (g %% 25) + 1 + g %% 3) END END
FROM (
  SELECT g, ts, metric, hashint, metric IN (5, 6) AS sms,
    metric IN (1, 2, 3, 4, 5, 6, 13) OR (metric = 8 AND g %% 5 < 2) AS message
  FROM (
    SELECT g, now() - random() * interval '400 days' AS ts,
      abs(hashint8(g)) AS hashint,
      CASE WHEN r < 0.45 THEN 1 WHEN r < 0.62 THEN 2 WHEN r < 0.65 THEN 3 WHEN r < 0.655 THEN 4
           WHEN r < 0.70 THEN 5 WHEN r < 0.705 THEN 6 WHEN r < 0.85 THEN 7 WHEN r < 0.88 THEN 8
           WHEN r < 0.8812 THEN 9 WHEN r < 0.91 THEN 10 WHEN r < 0.92 THEN 11
           WHEN r < 0.922 THEN 13 ELSE 12 END AS metric
    FROM (SELECT g, random() AS r FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) g) s) t) u
"""

RAW = """
WITH orders AS (
  SELECT e."timestamp" AS ts, e.profile_id, coalesce(e.value, 0) AS v,
    e.attributed_source_id IS NOT NULL OR EXISTS (
      SELECT 1 FROM klaviyo_events t WHERE t.profile_id = e.profile_id
        AND t.attributed_message_id IS NOT NULL AND t.attributed_source_id IS NOT NULL
        AND t."timestamp" < e."timestamp"
        AND ((t.metric_id IN ('m2', 'm3') AND t."timestamp" >= e."timestamp" - interval '120 hours')
          OR (t.metric_id = 'm6' AND t."timestamp" >= e."timestamp" - interval '24 hours'))
    ) AS attributed
  FROM klaviyo_events e WHERE e.metric_id = 'm8' AND e."timestamp" >= %(plo)s AND e."timestamp" < %(chi)s),
firsts AS (
  SELECT metric_id, min("timestamp") AS first_at FROM klaviyo_events
  WHERE metric_id IN ('m1', 'm2', 'm3', 'm5', 'm6') AND attributed_message_id IS NOT NULL
    AND attributed_source_id IS NOT NULL AND profile_id IS NOT NULL AND "timestamp" < %(chi)s
  GROUP BY metric_id, attributed_message_id, profile_id),
f AS (
  SELECT metric_id, first_at >= %(clo)s AS cur, count(*) AS n FROM firsts
  WHERE first_at >= %(plo)s GROUP BY 1, 2),
other AS (
  SELECT metric_id, "timestamp" >= %(clo)s AS cur, count(*) AS n, sum(abs(value)) AS v
  FROM klaviyo_events WHERE metric_id IN ('m9', 'm11')
    AND "timestamp" >= %(plo)s AND "timestamp" < %(chi)s GROUP BY 1, 2)
SELECT p.cur,
  (SELECT coalesce(sum(v), 0) FROM orders WHERE (ts >= %(clo)s) = p.cur) AS revenue,
  (SELECT count(*) FROM orders WHERE (ts >= %(clo)s) = p.cur) AS orders,
  (SELECT count(DISTINCT profile_id) FROM orders WHERE (ts >= %(clo)s) = p.cur) AS customers,
  (SELECT count(DISTINCT profile_id) FROM orders WHERE (ts >= %(clo)s) = p.cur AND attributed)
    AS buyers,
  (SELECT coalesce(sum(v), 0) FROM other WHERE metric_id = 'm9' AND other.cur = p.cur) AS refunds,
  (SELECT coalesce(sum(n), 0) FROM other WHERE metric_id = 'm11' AND other.cur = p.cur) AS forms,
  (SELECT coalesce(sum(n), 0) FROM f WHERE metric_id = 'm1' AND f.cur = p.cur) AS email_delivered,
  (SELECT coalesce(sum(n), 0) FROM f WHERE metric_id IN ('m1', 'm5') AND f.cur = p.cur) AS delivered,
  (SELECT coalesce(sum(n), 0) FROM f WHERE metric_id = 'm2' AND f.cur = p.cur) AS opens,
  (SELECT coalesce(sum(n), 0) FROM f WHERE metric_id IN ('m3', 'm6') AND f.cur = p.cur) AS clicks
FROM (VALUES (true), (false)) p(cur)
"""


async def load(conninfo: str, events: int, *, facts: bool = True) -> dict[str, float]:
    """Generate the data and rebuild aggregates (and with `facts` the facts); return the
    seconds each step took."""
    took: dict[str, float] = {}
    async with await AsyncConnection.connect(conninfo, row_factory=dict_row, autocommit=True) as c:
        await c.execute("SET statement_timeout = 0")
        params: dict[str, Any] = {"names": list(METRICS), "profiles": 200_000}
        started = time.perf_counter()
        for statement in SETUP:
            await c.execute(statement, params)  # type: ignore[arg-type]
        for lo in range(1, events + 1, CHUNK):
            hi = min(events, lo + CHUNK - 1)
            await c.execute(EVENTS, {**params, "lo": lo, "hi": hi})  # type: ignore[arg-type]
            print(
                f"  events {hi:,} of {events:,} ({time.perf_counter() - started:.0f} s)", flush=True
            )
        await c.execute("VACUUM ANALYZE")
        took["generate_s"] = time.perf_counter() - started
        started = time.perf_counter()
        async with c.transaction():
            cur = await c.execute(
                'SELECT min("timestamp") AS lo, max("timestamp") AS hi FROM klaviyo_events'
            )
            span = await cur.fetchone()
            assert span is not None
            await AggregateRepository().refresh(c, start=span["lo"], end=span["hi"], timezone=TZ)
        took["aggregates_s"] = time.perf_counter() - started
        if facts:
            started = time.perf_counter()
            async with c.transaction():
                await rebuild_facts(c, TZ)
            took["facts_s"] = time.perf_counter() - started
        await c.execute("VACUUM ANALYZE")
    return {step: round(seconds, 1) for step, seconds in took.items()}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(conninfo: str, runs: int) -> list[dict[str, Any]]:
    """Time the overview and the raw answer for each range; check that they agree."""
    results = []
    today = local_today(TZ)
    async with Database(conninfo, min_size=2, max_size=4, statement_timeout_ms=600_000) as db:
        for days in (30, 90, 365):
            rng = DateRange(today - timedelta(days=days - 1), today)
            clo, chi = rng.bounds(TZ)
            plo, _ = rng.previous().bounds(TZ)

            async def fast(conn: Conn, rng: DateRange = rng) -> Overview:
                return await overview(conn, rng, TZ)

            bounds = {"clo": clo, "chi": chi, "plo": plo}

            async def raw(conn: Conn, p: dict[str, Any] = bounds) -> Any:
                cur = await conn.execute(RAW, p)  # type: ignore[arg-type]
                return {r["cur"]: r for r in await cur.fetchall()}

            view = await db.run(fast, readonly=True)
            truth = await db.run(raw, readonly=True)
            check(view, truth)
            fast_ms, raw_ms = [], []
            for _ in range(runs):
                started = time.perf_counter()
                await db.run(fast, readonly=True)
                fast_ms.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                await db.run(raw, readonly=True)
                raw_ms.append((time.perf_counter() - started) * 1000)
            results.append({
                "days": days,
                "fast_p50": statistics.median(fast_ms), "fast_p95": percentile(fast_ms, 0.95),
                "raw_p50": statistics.median(raw_ms), "raw_p95": percentile(raw_ms, 0.95),
                "orders": int(view.orders.current),
            })  # fmt: skip
            print(results[-1], flush=True)
    return results


def check(view: Overview, truth: dict[bool, dict[str, Any]]) -> None:
    """Raise AssertionError unless the overview equals the raw answer, figure by figure."""
    for cur, attr in ((True, "current"), (False, "previous")):
        t = truth[cur]
        got = {
            "revenue": getattr(view.revenue, attr),
            "orders": getattr(view.orders, attr),
            "customers": getattr(view.unique_customers, attr),
            "refunds": getattr(view.refunds, attr),
            "forms": getattr(view.form_submissions, attr),
            "open_rate": getattr(view.open_rate, attr),
            "click_rate": getattr(view.click_rate, attr),
            "conversion_rate": getattr(view.conversion_rate, attr),
        }
        want = {
            "revenue": Decimal(t["revenue"]),
            "orders": Decimal(t["orders"]),
            "customers": Decimal(t["customers"]),
            "refunds": Decimal(t["refunds"]),
            "forms": Decimal(t["forms"]),
            "open_rate": ratio(t["opens"], t["email_delivered"]),
            "click_rate": ratio(t["clicks"], t["delivered"]),
            "conversion_rate": ratio(t["buyers"], t["delivered"]),
        }
        assert got == want, (attr, got, want)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with scratch_database("bench") as target:
        took = asyncio.run(load(target, args.events))
        print(took, flush=True)
        results = asyncio.run(measure(target, args.runs))
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"events: {args.events:,}; generate {took['generate_s']:.0f} s, aggregates "
          f"{took['aggregates_s']:.0f} s, facts rebuild {took['facts_s']:.0f} s")  # fmt: skip
    print(
        "| range | orders in range | overview p50 | overview p95 | raw p50 | raw p95 | speed-up (p50) |"
    )
    for r in results:
        print(f"| {r['days']} days | {r['orders']:,} | {r['fast_p50']:.1f} ms | {r['fast_p95']:.1f} ms"
              f" | {r['raw_p50']:.0f} ms | {r['raw_p95']:.0f} ms | {r['raw_p50'] / r['fast_p50']:.0f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
