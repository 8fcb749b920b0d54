"""`klaviyo-analytics apikey create|list|revoke`: the API's keys (stored hashed)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from klaviyo_analytics.cli.common import EXIT_FAILURE, err_console, fail_cleanly, load
from klaviyo_analytics.db.migrate import migrate
from klaviyo_analytics.db.pool import Conn, Database
from klaviyo_analytics.db.repos.api_keys import ApiKeyRepository
from klaviyo_analytics.wiring import check_reachable, database_server

T = TypeVar("T")

console = Console()
apikey_app = typer.Typer(help="Create, list and revoke API keys of the REST API.")


def _run_on_database(work: Callable[[Conn], Awaitable[T]]) -> T:
    """Migrate the configured database, then run `work` in one transaction on it."""
    settings = load()
    with fail_cleanly(), database_server(settings) as conninfo:
        asyncio.run(check_reachable(settings, conninfo))
        asyncio.run(migrate(conninfo))

        async def main() -> T:
            async with Database(conninfo, min_size=1, max_size=1) as db:
                return await db.run(work)

        return asyncio.run(main())


@apikey_app.command("create")
def create_command(
    name: Annotated[str, typer.Option(help="Who or what the key is for.")],
    role: Annotated[str, typer.Option(help="reader (GET only) or admin.")] = "reader",
) -> None:
    """Create a key and print its token once (only a hash is stored)."""
    # Imported here: FastAPI costs every other command a third of a second.
    from klaviyo_analytics.api.auth import ROLES, create_key

    if role not in ROLES:
        raise typer.BadParameter(f"unknown role {role!r}; choose one of: {', '.join(ROLES)}")
    created = _run_on_database(lambda c: create_key(c, name=name, role=role, actor="cli"))
    err_console.print(
        f"created key {created.key.id} ({created.key.name}, {created.key.role}); "
        "the token is shown this once:",
        highlight=False,
    )
    print(created.token)


@apikey_app.command("list")
def list_command() -> None:
    """List keys: id, name, role, prefix, created, last used, revoked."""
    keys = _run_on_database(ApiKeyRepository().list)
    table = Table("id", "name", "role", "prefix", "created", "last used", "revoked")
    for k in keys:
        table.add_row(
            str(k.id),
            k.name,
            k.role,
            k.prefix + "…",
            f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "-",
            f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "-",
        )
    console.print(table)


@apikey_app.command("revoke")
def revoke_command(key_id: Annotated[int, typer.Argument(help="The key's id (see list).")]) -> None:
    """Revoke a key; servers stop accepting it within seconds."""
    from klaviyo_analytics.api.auth import revoke_key

    key = _run_on_database(lambda c: revoke_key(c, key_id, actor="cli"))
    if key is None:
        err_console.print(f"[red]error:[/red] no API key {key_id}", highlight=False)
        raise typer.Exit(EXIT_FAILURE)
    console.print(f"revoked key {key.id} ({key.name})")
