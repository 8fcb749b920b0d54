"""Commands that look after the database: migrate, migrate status, maintenance."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from klaviyo_analytics.cli.common import fail_cleanly, load
from klaviyo_analytics.db import maintenance
from klaviyo_analytics.db.migrate import migrate, status
from klaviyo_analytics.wiring import check_reachable, database_server

console = Console()
migrate_app = typer.Typer(help="Apply database migrations, or show which are applied.")


@migrate_app.callback(invoke_without_command=True)
def migrate_command(ctx: typer.Context) -> None:
    """Apply every pending migration to the configured database."""
    if ctx.invoked_subcommand is not None:
        return
    settings = load()
    with fail_cleanly(), database_server(settings) as conninfo:
        asyncio.run(check_reachable(settings, conninfo))
        applied = asyncio.run(migrate(conninfo))
    if applied:
        for m in applied:
            console.print(f"applied [bold]{m.filename}[/bold]")
    else:
        console.print("database is up to date")


@migrate_app.command("status")
def migrate_status() -> None:
    """List every migration and when it was applied."""
    settings = load()
    with fail_cleanly(), database_server(settings) as conninfo:
        asyncio.run(check_reachable(settings, conninfo))
        states = asyncio.run(status(conninfo))
    table = Table("migration", "applied at")
    for s in states:
        table.add_row(
            s.migration.filename,
            s.applied_at.isoformat() if s.applied_at else "[yellow]pending[/yellow]",
        )
    console.print(table)


def maintenance_command(
    top: Annotated[
        int, typer.Option(min=1, max=1000, help="How many of the largest relations to list.")
    ] = 15,
) -> None:
    """Enforce retention, refresh planner statistics, report sizes, rebuild bloated indexes."""
    settings = load()
    rules = maintenance.retention_rules(
        raw_responses_days=settings.retention_raw_responses_days,
        events_months=settings.retention_events_months,
        aggregates_months=settings.retention_aggregates_months,
        predictions_months=settings.retention_predictions_months,
    )
    with fail_cleanly(), database_server(settings) as conninfo:
        asyncio.run(check_reachable(settings, conninfo))
        report = asyncio.run(maintenance.run_maintenance(conninfo, rules))
    console.print(f"TimescaleDB: {'yes' if report.timescaledb else 'no'}")
    for table_name, n in report.expired_rows.items():
        console.print(f"expired rows deleted from {table_name}: {n}")
    unit = "chunks" if report.timescaledb else "partitions"
    for table_name, n in report.dropped_partitions.items():
        console.print(f"expired {unit} dropped from {table_name}: {n}")
    sizes = Table("relation", "kind", "size", "rows (est.)")
    for r in report.sizes[:top]:
        sizes.add_row(r.name, r.kind, _human(r.bytes), f"{r.rows_estimate:,}")
    console.print(sizes)
    console.print(f"unused indexes: {', '.join(report.unused_indexes) or 'none'}")
    console.print(f"rebuilt indexes: {', '.join(report.rebuilt_indexes) or 'none'}")
    for note in report.notes:
        console.print(f"[dim]{note}[/dim]")


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
