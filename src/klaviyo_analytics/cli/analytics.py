"""`klaviyo-analytics analytics rebuild`: recompute pre-aggregates, facts and dim_time."""

from __future__ import annotations

import asyncio
import time
from datetime import date, timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from klaviyo_analytics.analytics.facts import rebuild_facts
from klaviyo_analytics.analytics.order_lines import rebuild_order_lines
from klaviyo_analytics.analytics.periods import store_timezone
from klaviyo_analytics.cli.common import fail_cleanly, load
from klaviyo_analytics.config import Settings
from klaviyo_analytics.db.migrate import migrate
from klaviyo_analytics.db.pool import Conn
from klaviyo_analytics.db.repos.aggregates import AggregateRepository
from klaviyo_analytics.db.repos.operations import without_statement_timeout
from klaviyo_analytics.wiring import check_reachable, database_server, open_database

console = Console()
analytics_app = typer.Typer(help="Rebuild and inspect the analytics tables.", no_args_is_help=True)


@analytics_app.command("rebuild")
def rebuild_command(
    timezone: Annotated[
        str | None,
        typer.Option(help="The store's time zone (default: ACCOUNT_TIMEZONE, else the account's)."),
    ] = None,
    country: Annotated[str, typer.Option(help="Country of the holiday calendar.")] = "US",
) -> None:
    """Rebuild the pre-aggregates, the daily facts and dim_time from raw events."""
    settings = load()
    with fail_cleanly(), database_server(settings) as conninfo:
        asyncio.run(check_reachable(settings, conninfo))
        asyncio.run(migrate(conninfo))
        asyncio.run(run_rebuild(settings, conninfo, timezone=timezone, country=country))


async def run_rebuild(
    settings: Settings, conninfo: str, *, timezone: str | None, country: str
) -> dict[str, int]:
    """Rebuild everything in one transaction (no statement timeout: this is maintenance)."""
    started = time.monotonic()
    async with open_database(settings, conninfo) as db:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
        ) as progress:

            async def work(conn: Conn) -> dict[str, int]:
                await without_statement_timeout(conn)
                zone = await store_timezone(conn, timezone or settings.account_timezone)
                counts: dict[str, int] = {}
                aggregates = progress.add_task("aggregates", total=1, detail=zone)
                counts["klaviyo_aggregated_metrics"] = await AggregateRepository().rebuild(
                    conn, timezone=zone
                )
                progress.update(aggregates, completed=1)
                facts = progress.add_task("facts", total=None, detail="")

                def advance(done: date, last: date) -> None:
                    left = max((last - done).days, 0)
                    progress.update(facts, detail=f"through {done}", total=None)
                    if left == 0:
                        progress.update(facts, total=1, completed=1)

                # Lines first: the facts' rebuild ends with the product facts, read from them.
                counts["fact_order_lines"] = await rebuild_order_lines(conn, zone)
                counts.update(await rebuild_facts(conn, zone, country=country, progress=advance))
                progress.update(facts, total=1, completed=1)
                return counts

            counts = await db.run(work)
    print_summary(counts, timedelta(seconds=time.monotonic() - started))
    return counts


def print_summary(counts: dict[str, int], took: timedelta) -> None:
    """Print the rows of each rebuilt table."""
    table = Table(title=f"analytics rebuilt in {took.total_seconds():.1f}s")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in counts.items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
