"""`klaviyo-analytics demo`: the main job on the embedded defaults, with no setup."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console

from klaviyo_analytics.cli.common import fail_cleanly, load
from klaviyo_analytics.cli.runtime import check_reachable, database_server
from klaviyo_analytics.db.migrate import migrate, status

console = Console()


def demo_command(
    keep_running: Annotated[
        bool,
        typer.Option(
            "--keep-running/--exit", help="Stay up until Ctrl-C (default) or exit when done."
        ),
    ] = True,
) -> None:
    """Start the embedded database, migrate it, and report what is there."""
    settings = load()
    with fail_cleanly(), database_server(settings) as conninfo:
        asyncio.run(check_reachable(settings, conninfo))
        applied = asyncio.run(migrate(conninfo))
        states = asyncio.run(status(conninfo))
        where = (
            "embedded PostgreSQL in " + str(settings.embedded_data_dir)
            if settings.uses_embedded_database
            else "the configured server"
        )
        console.print(
            f"[green]database ready[/green] on {where}: {len(states)} migrations, {len(applied)} applied now"
        )
        if keep_running:
            console.print("running; press Ctrl-C to stop")
            try:
                asyncio.run(_wait_forever())
            except KeyboardInterrupt:
                console.print("stopping")


async def _wait_forever() -> None:
    await asyncio.Event().wait()
