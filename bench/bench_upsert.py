"""Benchmark: batch-upsert N generated events vs a raw COPY of the same rows.

    python bench/bench_upsert.py [--events 1000000] [--batch 5000]

Runs on a fresh embedded PostgreSQL (or DATABASE_URL's server, in a scratch database). The
baseline is `COPY` of the same rows into an empty copy of `klaviyo_events` with the same
indexes (`LIKE ... INCLUDING ALL`); the candidate is `EventRepository.upsert_many` into the
real, empty table with its foreign keys (stub profiles and metrics first; a batch whose time
range holds no stored row is copied straight in, any other goes through a staging table and one
INSERT ... ON CONFLICT). Target: upsert rate >= 0.5x the COPY rate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from psycopg import AsyncConnection
from psycopg.rows import dict_row
from scratch import scratch_database, server_label

from klaviyo_analytics.db.repos.base import adapt
from klaviyo_analytics.db.repos.events import Event, EventRepository

METRICS = ["m-received", "m-opened", "m-clicked", "m-order", "m-viewed"]
START = datetime(2025, 11, 1, tzinfo=UTC)


def generate(n: int, seed: int = 1) -> Iterator[Event]:
    rng = random.Random(seed)
    for i in range(n):
        metric = METRICS[i % len(METRICS)]
        value = Decimal(f"{rng.lognormvariate(3.5, 0.8):.2f}") if metric == "m-order" else None
        yield Event(
            id=f"ev{i:09d}",
            timestamp=START + timedelta(seconds=i * 30),
            metric_id=metric,
            profile_id=f"p{rng.randrange(100_000)}" if rng.random() > 0.05 else None,
            value=value,
            properties={"$value": str(value)} if value is not None else {"campaign": "c1"},
        )


def batched(it: Iterator[Event], size: int) -> Iterator[list[Event]]:
    batch: list[Event] = []
    for e in it:
        batch.append(e)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


async def bench(conninfo: str, n: int, batch_size: int) -> dict[str, float]:
    repo = EventRepository()
    async with await AsyncConnection.connect(conninfo, row_factory=dict_row) as conn:
        await conn.execute(
            "INSERT INTO klaviyo_metrics (id, name) SELECT unnest(%s::text[]), 'm'", (METRICS,)
        )
        await conn.execute("CREATE TABLE bench_copy (LIKE klaviyo_events INCLUDING ALL)")
        await conn.commit()

        started = time.perf_counter()
        for batch in batched(generate(n), batch_size):
            async with conn.cursor().copy(
                "COPY bench_copy (id, timestamp, metric_id, profile_id, value, uuid, properties,"
                " attributed_source_type, attributed_source_id, attributed_message_id) FROM STDIN"
            ) as copy:
                for e in batch:
                    await copy.write_row([adapt(getattr(e, c)) for c in repo.columns])
            await conn.commit()
        copy_s = time.perf_counter() - started

        started = time.perf_counter()
        for batch in batched(generate(n), batch_size):
            await repo.upsert_many(conn, batch)
            await conn.commit()
        upsert_s = time.perf_counter() - started

        started = time.perf_counter()
        for batch in batched(generate(min(n, 200_000)), batch_size):
            await repo.upsert_many(conn, batch)
            await conn.commit()
        rerun_s = time.perf_counter() - started
        cur = await conn.execute("SELECT count(*) AS n FROM klaviyo_events")
        row = await cur.fetchone()
        assert row is not None and row["n"] == n, row
    return {"copy_s": copy_s, "upsert_s": upsert_s, "rerun_s": rerun_s, "rerun_n": min(n, 200_000)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5_000)
    args = parser.parse_args()
    with scratch_database("bench") as target:
        r = asyncio.run(bench(target, args.events, args.batch))
    copy_rate = args.events / r["copy_s"]
    upsert_rate = args.events / r["upsert_s"]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"server: {server_label()}; events: {args.events:,}; batch: {args.batch:,}")
    print(f"raw COPY (baseline):   {r['copy_s']:7.1f} s  {copy_rate:10,.0f} rows/s")
    print(f"batch upsert:          {r['upsert_s']:7.1f} s  {upsert_rate:10,.0f} rows/s")
    print(f"ratio upsert/COPY:     {upsert_rate / copy_rate:.2f}x (target >= 0.5x)")
    print(
        f"re-upsert of {r['rerun_n']:,} unchanged rows: {r['rerun_s']:.1f} s ({r['rerun_n'] / r['rerun_s']:,.0f} rows/s)"
    )


if __name__ == "__main__":
    main()
