"""Benchmark: plain PostgreSQL (monthly partitions) vs TimescaleDB (compressed chunks).

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/bench_timescale.py --events 1000000
    DATABASE_URL=postgresql://postgres@127.0.0.1:55432/postgres python bench/bench_timescale.py --events 1000000

Run it once per server (the second is a TimescaleDB server from ../shared/timescaledb/
start-server.sh); it says which back end it found. In a scratch database it creates the
partitions (or chunks) for 400 days, generates `--events` events and the facts exactly as
bench/bench_overview.py does, compresses every chunk on TimescaleDB, then measures:

* bytes on disk per event: klaviyo_events with its indexes and TOAST, all partitions or chunks
  (`hypertable_size` on TimescaleDB), divided by the number of events;
* the overview KPIs (`analytics.kpis.overview`) for 30, 90 and 365 days: p50/p95 of `--runs`;
* a 365-day daily metric time series of Placed Order (`analytics.timeseries.metric_series`,
  count from the pre-aggregates, and `unique` profiles, which reads the raw events);
* retention of the oldest whole month: seconds and WAL bytes (`pg_current_wal_lsn()` before
  and after) of dropping its partition (plain) or its chunks (`drop_chunks`, TimescaleDB), and,
  as the same-run baseline, a `DELETE` of the next month's rows.

Goals: compressed bytes per event <= 15 % of plain; retention of a month <= 1 s on both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench_overview import TZ, load, percentile
from psycopg import AsyncConnection
from psycopg.rows import dict_row
from scratch import scratch_database

from klaviyo_analytics.analytics.kpis import overview
from klaviyo_analytics.analytics.periods import DateRange, local_today
from klaviyo_analytics.analytics.timeseries import metric_series
from klaviyo_analytics.db.pool import Conn, Database

Row = dict[str, Any]


async def one(c: AsyncConnection[Row], query: str, params: Any = None) -> Row:
    cur = await c.execute(query, params)  # type: ignore[arg-type]
    row = await cur.fetchone()
    assert row is not None
    return row


async def prepare(conninfo: str, events: int) -> dict[str, Any]:
    """Create partitions or chunks for the range, load the data, compress on TimescaleDB."""
    async with await AsyncConnection.connect(conninfo, row_factory=dict_row, autocommit=True) as c:
        tsdb = bool(
            (await one(c, "SELECT count(*) AS n FROM pg_extension WHERE extname = 'timescaledb'"))[
                "n"
            ]
        )
        await one(
            c,
            "SELECT ka_ensure_partitions('klaviyo_events', now() - interval '401 days', now()) AS n",
        )
    took = await load(conninfo, events)
    async with await AsyncConnection.connect(conninfo, row_factory=dict_row, autocommit=True) as c:
        await c.execute("SET statement_timeout = 0")
        plain_bytes = await events_bytes(c, tsdb)
        if tsdb:
            started = time.perf_counter()
            await c.execute(
                "SELECT count(compress_chunk(ch, if_not_compressed => true))"
                " FROM show_chunks('klaviyo_events') ch"
            )
            took["compress_s"] = time.perf_counter() - started
            await c.execute("VACUUM ANALYZE klaviyo_events")
        count = (await one(c, "SELECT count(*) AS n FROM klaviyo_events"))["n"]
        size = await events_bytes(c, tsdb)
    return {
        "timescaledb": tsdb,
        "events": count,
        "bytes": size,
        "bytes_per_event": size / count,
        "uncompressed_bytes_per_event": plain_bytes / count,
        **took,
    }


async def events_bytes(c: AsyncConnection[Row], tsdb: bool) -> int:
    """Return the bytes of klaviyo_events: every partition or chunk, indexes and TOAST."""
    if tsdb:
        return int((await one(c, "SELECT hypertable_size('klaviyo_events') AS b"))["b"])
    return int(
        (
            await one(
                c,
                "SELECT sum(pg_total_relation_size(relid)) AS b"
                " FROM pg_partition_tree('klaviyo_events') WHERE isleaf",
            )
        )["b"]
    )


async def queries(conninfo: str, runs: int) -> dict[str, Any]:
    """Time the overview and the 365-day series through the pool."""
    out: dict[str, Any] = {}
    today = local_today(TZ)
    pool = 4
    async with Database(conninfo, min_size=1, max_size=1, statement_timeout_ms=600_000) as db:
        # A connection's first query also loads the catalogue of every partition or chunk it
        # plans over (on TimescaleDB ~60 chunks, tens of ms). That is paid once per pooled
        # connection, so it is reported on its own, and every connection is warmed below.
        rng30 = DateRange(today - timedelta(days=29), today)
        started = time.perf_counter()
        await db.run(lambda conn: overview(conn, rng30, TZ), readonly=True)
        out["overview_30d_new_connection_ms"] = round((time.perf_counter() - started) * 1000, 1)
    async with Database(conninfo, min_size=pool, max_size=pool, statement_timeout_ms=600_000) as db:
        for days in (30, 90, 365):
            rng = DateRange(today - timedelta(days=days - 1), today)

            async def fast(conn: Conn, rng: DateRange = rng) -> Any:
                return await overview(conn, rng, TZ)

            # Warm every pooled connection (concurrent runs take distinct connections).
            await asyncio.gather(*(db.run(fast, readonly=True) for _ in range(pool)))
            out[f"overview_{days}d"] = await timed(db, fast, runs)
        end = datetime.now(UTC)
        for measure in ("count", "unique"):

            async def series(conn: Conn, measure: Any = measure) -> Any:
                return await metric_series(
                    conn, "m8", start=end - timedelta(days=365), end=end, tz=TZ, measure=measure
                )

            await asyncio.gather(*(db.run(series, readonly=True) for _ in range(pool)))
            out[f"series_365d_{measure}"] = await timed(db, series, runs)
    return out


async def timed(db: Database, work: Any, runs: int) -> dict[str, float]:
    ms = []
    for _ in range(runs):
        started = time.perf_counter()
        await db.run(work, readonly=True)
        ms.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(statistics.median(ms), 1), "p95_ms": round(percentile(ms, 0.95), 1)}


async def retention(conninfo: str, tsdb: bool) -> dict[str, Any]:
    """Drop the oldest whole month (partition or chunks); DELETE the next one as baseline."""
    async with await AsyncConnection.connect(conninfo, row_factory=dict_row, autocommit=True) as c:
        await c.execute("SET statement_timeout = 0")
        span = await one(
            c,
            "SELECT date_trunc('month', min(\"timestamp\"), 'UTC') + interval '1 month' AS lo"
            " FROM klaviyo_events",
        )
        lo = span["lo"]  # the first whole month starts here
        hi = (await one(c, "SELECT %s::timestamptz + interval '1 month' AS hi", (lo,)))["hi"]
        nxt = (await one(c, "SELECT %s::timestamptz + interval '1 month' AS n", (hi,)))["n"]
        await c.execute('DELETE FROM klaviyo_events WHERE "timestamp" < %s', (lo,))  # partial month
        await c.execute("CHECKPOINT")
        rows = (
            await one(
                c,
                'SELECT count(*) AS n FROM klaviyo_events WHERE "timestamp" >= %s'
                ' AND "timestamp" < %s',
                (lo, hi),
            )
        )["n"]
        wal0 = (await one(c, "SELECT pg_current_wal_lsn() AS l"))["l"]
        started = time.perf_counter()
        if tsdb:
            # 7-day chunks: those wholly before `hi`; the chunk straddling `hi` stays.
            await c.execute(
                "SELECT drop_chunks('klaviyo_events', older_than => %s::timestamptz)", (hi,)
            )
        else:
            name = "klaviyo_events_p" + lo.astimezone(UTC).strftime("%Y%m")
            await c.execute(f'DROP TABLE "{name}"')
        drop_s = time.perf_counter() - started
        wal1 = (await one(c, "SELECT pg_current_wal_lsn() AS l"))["l"]
        drop_wal = (await one(c, "SELECT %s::pg_lsn - %s::pg_lsn AS b", (wal1, wal0)))["b"]
        gone = (
            rows
            - (
                await one(
                    c,
                    'SELECT count(*) AS n FROM klaviyo_events WHERE "timestamp" >= %s'
                    ' AND "timestamp" < %s',
                    (lo, hi),
                )
            )["n"]
        )
        await c.execute("CHECKPOINT")
        wal0 = (await one(c, "SELECT pg_current_wal_lsn() AS l"))["l"]
        started = time.perf_counter()
        cur = await c.execute(
            'DELETE FROM klaviyo_events WHERE "timestamp" >= %s AND "timestamp" < %s', (hi, nxt)
        )
        delete_s = time.perf_counter() - started
        deleted = cur.rowcount
        wal1 = (await one(c, "SELECT pg_current_wal_lsn() AS l"))["l"]
        delete_wal = (await one(c, "SELECT %s::pg_lsn - %s::pg_lsn AS b", (wal1, wal0)))["b"]
    return {
        "month": lo.astimezone(UTC).strftime("%Y-%m"),
        "drop_rows": gone,
        "drop_s": round(drop_s, 3),
        "drop_wal_bytes": int(drop_wal),
        "delete_rows": deleted,
        "delete_s": round(delete_s, 3),
        "delete_wal_bytes": int(delete_wal),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with scratch_database("bench_tsdb") as conninfo:
        started = time.perf_counter()
        result = asyncio.run(prepare(conninfo, args.events))
        result.update(asyncio.run(queries(conninfo, args.runs)))
        result["retention"] = asyncio.run(retention(conninfo, result["timescaledb"]))
        result["total_s"] = round(time.perf_counter() - started, 1)
    result["machine"] = f"{platform.machine()}, {platform.python_version()}"
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
