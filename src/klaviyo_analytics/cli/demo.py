"""`klaviyo-analytics demo`: the whole product on embedded defaults, with no setup and no key.

An embedded PostgreSQL, a local Klaviyo-compatible sandbox on a free port (its store is kept
the same between runs, and its clock follows real time so there is always new data), a full
sync with progress bars, then the dashboard and API, with an admin key printed. A second run
reuses the database and syncs incrementally.
"""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import httpx
import typer
from pydantic import SecretStr
from rich.console import Console

from klaviyo_analytics.api.auth import create_key, revoke_key
from klaviyo_analytics.cli.common import fail_cleanly, load
from klaviyo_analytics.cli.runtime import stop_on_sigterm
from klaviyo_analytics.cli.sync import print_summary, run_sync
from klaviyo_analytics.config import Settings
from klaviyo_analytics.db.migrate import migrate
from klaviyo_analytics.db.pool import Conn
from klaviyo_analytics.db.repos.api_keys import ApiKeyRepository
from klaviyo_analytics.sandbox.config import SandboxConfig, StoreOptions
from klaviyo_analytics.sandbox.server import SandboxServer
from klaviyo_analytics.sync.runner import StreamResult
from klaviyo_analytics.wiring import check_reachable, database_server, open_database

console = Console()
DEMO_KEY_NAME = "demo"


@dataclass(frozen=True)
class DemoStore:
    """The sandbox store of this home directory, fixed at its first run."""

    seed: int
    profiles: int
    days: int
    end: datetime

    @staticmethod
    def load_or_create(path: Path, *, profiles: int, days: int) -> DemoStore:
        """Read the store of earlier runs, or fix a new one that ends at today's midnight."""
        if path.exists():
            data = json.loads(path.read_text())
            return DemoStore(
                data["seed"], data["profiles"], data["days"], datetime.fromisoformat(data["end"])
            )
        end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        store = DemoStore(seed=1, profiles=profiles, days=days, end=end)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps({"seed": 1, "profiles": profiles, "days": days, "end": end.isoformat()})
        )
        return store

    def config(self) -> SandboxConfig:
        """Return a live sandbox of this store without rate limits (a demo should not wait)."""
        options = StoreOptions(seed=self.seed, profiles=self.profiles, days=self.days, end=self.end)
        return SandboxConfig(store=options, live=True, rate_limits=False)


def demo_command(
    port: Annotated[
        int,
        typer.Option(min=1, max=65535, help="Port of the dashboard and API (a free one if taken)."),
    ] = 8000,
    profiles: Annotated[
        int, typer.Option(min=100, max=500_000, help="Profiles of the demo store (first run only).")
    ] = 3_000,
    days: Annotated[
        int,
        typer.Option(min=7, max=730, help="Days of history of the demo store (first run only)."),
    ] = 90,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve/--exit",
            help="Serve the dashboard until Ctrl-C (default), or exit after the sync.",
        ),
    ] = True,
) -> None:
    """Run everything locally: database, sandbox, sync, dashboard and API."""
    settings = load()
    store = DemoStore.load_or_create(
        settings.home_dir / "demo-store.json", profiles=profiles, days=days
    )
    results: list[StreamResult] = []
    with (
        fail_cleanly(),
        stop_on_sigterm(),
        database_server(settings) as conninfo,
        SandboxServer(store.config()) as sandbox,
    ):
        _catch_up(sandbox)
        demo = settings.model_copy(
            update={
                "klaviyo_api_key": SecretStr(sandbox.api_key),
                "klaviyo_base_url": sandbox.base_url,
            }
        )
        asyncio.run(check_reachable(demo, conninfo))
        asyncio.run(migrate(conninfo))
        where = (
            f"embedded PostgreSQL in {settings.embedded_data_dir}"
            if settings.uses_embedded_database
            else "the configured database"
        )
        console.print(f"[bold]database[/bold] {where}")
        console.print(
            f"[bold]sandbox[/bold]  {sandbox.base_url} ({store.profiles:,} profiles, {store.days} days, live)"
        )
        try:
            asyncio.run(run_sync(demo, conninfo, "all", since=None, full=False, results=results))
        finally:
            if results:
                print_summary(results)
        token = asyncio.run(_fresh_admin_key(demo, conninfo))
        if not serve:
            console.print(f"admin key: {token}")
            return
        chosen = port if _is_free(port) else _free_port()
        url = f"http://127.0.0.1:{chosen}/"
        console.print(
            f"\n[bold green]dashboard[/bold green] {url}\n[bold]admin key[/bold] {token}\nCtrl-C to stop"
        )
        # Imported here: the app pulls in the forecasting libraries (~130 MiB), which every
        # other command (and `sync` in particular) should not pay for at start-up.
        import uvicorn

        from klaviyo_analytics.api.app import create_app

        app = create_app(demo, conninfo=conninfo)
        uvicorn.run(app, host="127.0.0.1", port=chosen, log_config=None)


def _catch_up(sandbox: SandboxServer) -> None:
    """Move the live sandbox's clock to now, so days since the last run have their events."""
    now = datetime.now(UTC)
    if now - sandbox.config.store.end > timedelta(seconds=1):
        httpx.post(
            f"{sandbox.base_url}/admin/clock", json={"now": now.isoformat()}, timeout=60
        ).raise_for_status()


async def _fresh_admin_key(settings: Settings, conninfo: str) -> str:
    """Revoke earlier demo keys and create one for this run; return its token (shown once)."""
    async with open_database(settings.model_copy(update={"db_min_connections": 1}), conninfo) as db:

        async def work(conn: Conn) -> str:
            for key in await ApiKeyRepository().list(conn, include_revoked=False):
                if key.name == DEMO_KEY_NAME:
                    await revoke_key(conn, key.id, actor="demo")
            return (await create_key(conn, name=DEMO_KEY_NAME, role="admin", actor="demo")).token

        token: str = await db.run(work)
        return token


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
