"""`klaviyo-analytics sync [stream|all] [--since DATE] [--full]` with progress bars."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from klaviyo_analytics.cli.common import fail_cleanly, load
from klaviyo_analytics.cli.runtime import tune_garbage_collection
from klaviyo_analytics.config import Settings
from klaviyo_analytics.db.migrate import migrate
from klaviyo_analytics.sync.progress import RunCounters
from klaviyo_analytics.sync.registry import STREAMS
from klaviyo_analytics.sync.runner import StreamResult
from klaviyo_analytics.wiring import (
    check_reachable,
    database_server,
    klaviyo_client,
    open_database,
    sync_options,
    sync_service,
)

console = Console()


def parse_since(value: str | None) -> datetime | None:
    """Read --since: a date (YYYY-MM-DD, midnight UTC) or an ISO datetime.

    Raises typer.BadParameter naming the accepted forms.
    """
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date (YYYY-MM-DD) or ISO datetime") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if parsed > datetime.now(UTC):
        raise typer.BadParameter(f"{value!r} is in the future")
    return parsed


def sync_command(
    stream: Annotated[str, typer.Argument(help=f"all, or one of: {', '.join(STREAMS)}")] = "all",
    since: Annotated[
        str | None,
        typer.Option(help="Backfill events from this date (YYYY-MM-DD or ISO datetime)."),
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Forget the incremental state and start over.")
    ] = False,
) -> None:
    """Sync the Klaviyo account (KLAVIYO_API_KEY) into the database."""
    if stream != "all" and stream not in STREAMS:
        raise typer.BadParameter(
            f"unknown stream {stream!r}; choose all or one of: {', '.join(STREAMS)}"
        )
    start = parse_since(since)
    settings = load()
    tune_garbage_collection()
    results: list[StreamResult] = []
    try:
        with fail_cleanly(), database_server(settings) as conninfo:
            asyncio.run(check_reachable(settings, conninfo))
            asyncio.run(migrate(conninfo))
            asyncio.run(
                run_sync(settings, conninfo, stream, since=start, full=full, results=results)
            )
    finally:
        if results:
            print_summary(results)


async def run_sync(
    settings: Settings,
    conninfo: str,
    stream: str,
    *,
    since: datetime | None,
    full: bool,
    results: list[StreamResult],
    console_out: Console | None = None,
) -> None:
    """Run a sync with a progress bar per stream; each stream's result lands in `results`."""
    out = console_out or console
    with Progress(
        TextColumn("[bold]{task.fields[stream]:<10}"),
        BarColumn(),
        TextColumn(
            "{task.fields[records]:>9,} records  {task.fields[pages]:>6,} pages  {task.fields[rate]:>8,.0f}/s"
        ),
        TimeRemainingColumn(),
        console=out,
        transient=False,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def show(c: RunCounters) -> None:
            if c.stream not in tasks:
                tasks[c.stream] = progress.add_task(
                    c.stream,
                    total=None if c.fraction is None else 1.0,
                    stream=c.stream,
                    records=0,
                    pages=0,
                    rate=0.0,
                )
            task = tasks[c.stream]
            if c.fraction is not None:
                progress.update(task, total=1.0, completed=c.fraction)
            progress.update(task, records=c.fetched, pages=c.pages, rate=c.rate_per_s)

        async with open_database(settings, conninfo) as db, klaviyo_client(settings) as client:
            service = sync_service(db, client, options=sync_options(settings), listener=show)
            service.results = results
            try:
                await service.run_stream(stream, since=since, full=full)
            finally:
                for task in tasks.values():
                    progress.update(task, total=1.0, completed=1.0)


def print_summary(results: list[StreamResult]) -> None:
    """Print one row per stream: status, records fetched, rows written, calls, retries, 429s."""
    table = Table("stream", "status", "records", "written", "calls", "retries", "429s", "bad", "s")
    for r in results:
        status = r.status if r.status == "succeeded" else f"[red]{r.status}[/red]"
        table.add_row(
            r.stream,
            status,
            f"{r.fetched:,}",
            f"{sum(r.rows.values()):,}",
            str(r.api_calls),
            str(r.retries),
            str(r.rate_limited),
            str(r.quarantined),
            f"{r.duration_s:.1f}",
        )
    console.print(table)
    for r in results:
        if r.error:
            console.print(f"[red]{r.stream}[/red]: {r.error}", highlight=False)
