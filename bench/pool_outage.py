"""Measure the pool through a PostgreSQL outage: time per failed request while the server is
down, and how long after it is back the first request succeeds.

Runs on a scratch embedded server in a temporary folder (never a shared one), with the pool
sized and timed as `serve` does by default (DB_* settings).

    python bench/pool_outage.py [--requests 3] [--outage-s 10]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from klaviyo_analytics import wiring
from klaviyo_analytics.config import Settings
from klaviyo_analytics.db.embedded import EmbeddedPostgres
from klaviyo_analytics.db.pool import Conn
from klaviyo_analytics.errors import DatabaseUnavailableError


async def one(conn: Conn) -> None:
    await conn.execute("SELECT 1")


async def measure(server: EmbeddedPostgres, requests: int, outage_s: float) -> None:
    db = wiring.database(Settings(), server.conninfo("postgres"))
    async with db:
        await db.run(one)
        server.stop()
        down_at = time.monotonic()
        took = []
        for _ in range(requests):
            started = time.monotonic()
            try:
                await db.run(one)
            except DatabaseUnavailableError:
                pass
            took.append(time.monotonic() - started)
        await asyncio.sleep(max(0.0, outage_s - (time.monotonic() - down_at)))
        server.start()
        back = time.monotonic()
        while True:
            try:
                await db.run(one)
                break
            except DatabaseUnavailableError:
                await asyncio.sleep(0.05)
        recovered = time.monotonic() - back
    print(f"failed request while down: max {max(took):.3f} s (each: {[round(t, 3) for t in took]})")
    print(f"first success {recovered:.2f} s after the server was back (outage {outage_s:g} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3)
    parser.add_argument("--outage-s", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedPostgres(Path(tmp) / "pgdata") as server:
        asyncio.run(measure(server, args.requests, args.outage_s))


if __name__ == "__main__":
    main()
