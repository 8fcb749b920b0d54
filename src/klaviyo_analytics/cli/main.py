"""The `klaviyo-analytics` command."""

from __future__ import annotations

import typer

from klaviyo_analytics.cli import db, demo, sandbox, scheduler, serve, sync
from klaviyo_analytics.cli.analytics import analytics_app
from klaviyo_analytics.cli.apikey import apikey_app
from klaviyo_analytics.cli.backup import backup_app

app = typer.Typer(
    name="klaviyo-analytics",
    help="Sync a Klaviyo account into PostgreSQL and serve analytics on it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain click help: typer's rich help labels every flag "<bool>" (`--help <bool>`).
    rich_markup_mode=None,
)
app.add_typer(db.migrate_app, name="migrate")
app.command("maintenance")(db.maintenance_command)
app.command("demo")(demo.demo_command)
app.command("sync")(sync.sync_command)
app.command("scheduler")(scheduler.scheduler_command)
app.add_typer(backup_app, name="backup")
app.add_typer(analytics_app, name="analytics")
sandbox.register(app)
app.command("serve")(serve.serve_command)
app.add_typer(apikey_app, name="apikey")


def main() -> None:
    """Run the command line."""
    app()
