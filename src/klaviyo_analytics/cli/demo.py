"""`klaviyo-analytics demo`: the whole product on embedded defaults, with no setup and no key.

An embedded PostgreSQL, a local Klaviyo-compatible sandbox on a free port (its store is kept
the same between runs, and its clock follows real time so there is always new data), a full
sync with progress bars, then the dashboard and API, with an admin key printed once the server
answers. A second run reuses the database (and the admin key, saved 0600 beside the data) and
syncs incrementally.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import httpx
import typer
from pydantic import SecretStr
from rich.console import Console

from klaviyo_analytics.cli.common import fail_cleanly, load
from klaviyo_analytics.cli.runtime import stop_on_sigterm
from klaviyo_analytics.cli.sync import print_summary, run_sync
from klaviyo_analytics.config import Settings
from klaviyo_analytics.db.migrate import migrate
from klaviyo_analytics.db.pool import Conn
from klaviyo_analytics.db.repos.api_keys import ApiKeyRepository
from klaviyo_analytics.private import FILE_MODE, private_dir, private_file
from klaviyo_analytics.sandbox.config import SandboxConfig, StoreOptions
from klaviyo_analytics.sync.runner import StreamResult
from klaviyo_analytics.wiring import check_reachable, database_server, open_database

if TYPE_CHECKING:
    from klaviyo_analytics.sandbox.server import SandboxServer

console = Console()
DEMO_KEY_NAME = "demo"
# The demo's admin key, kept beside the data (0600) so that every run and restart reuses it.
DEMO_KEY_FILE = "demo-admin-key"


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
    # Imported here: FastAPI, uvicorn and the sandbox's NumPy cost every other command 0.5 s.
    from klaviyo_analytics.sandbox.server import SandboxServer

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
        token = asyncio.run(_demo_admin_key(demo, conninfo, settings.home_dir / DEMO_KEY_FILE))
        if not serve:
            console.print(f"admin key: {token}")
            return
        chosen = port if _is_free(port) else _free_port()
        url = f"http://127.0.0.1:{chosen}/"
        # Imported here: the app pulls in the forecasting libraries (~130 MiB), which every
        # other command (and `sync` in particular) should not pay for at start-up.
        import uvicorn

        from klaviyo_analytics.api.app import create_app

        app = create_app(demo, conninfo=conninfo)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=chosen, log_config=None))

        async def announce() -> None:
            # The URL is printed once the server answers, so that it never leads to a refusal.
            while not server.started:
                if server.should_exit:
                    return
                await asyncio.sleep(0.05)
            console.print(
                f"\n[bold green]dashboard[/bold green] {url}\n[bold]admin key[/bold] {token}"
                f" (kept in {settings.home_dir / DEMO_KEY_FILE} for the next runs)\nCtrl-C to stop"
            )

        async def run() -> None:
            waiting = asyncio.create_task(announce())
            try:
                await server.serve()
            finally:
                waiting.cancel()

        asyncio.run(run())


def _catch_up(sandbox: SandboxServer) -> None:
    """Move the live sandbox's clock to now, so days since the last run have their events."""
    now = datetime.now(UTC)
    if now - sandbox.config.store.end > timedelta(seconds=1):
        httpx.post(
            f"{sandbox.base_url}/admin/clock", json={"now": now.isoformat()}, timeout=60
        ).raise_for_status()


def read_demo_key(path: Path) -> str | None:
    """Return the demo key saved by an earlier run, or None."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return token or None


def save_demo_key(path: Path, token: str) -> None:
    """Write the demo key to `path`, readable by its owner only (0600 from the start)."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(token + "\n")
    private_file(path)


async def _demo_admin_key(settings: Settings, conninfo: str, path: Path) -> str:
    """Return the demo's admin key: the one saved beside the data by an earlier run while the
    database still accepts it (so an open dashboard stays logged in across runs), else a new
    one (earlier demo keys revoked), saved 0600 at `path`."""
    from klaviyo_analytics.api.auth import create_key, hash_token, revoke_key

    saved = read_demo_key(path)
    async with open_database(settings.model_copy(update={"db_min_connections": 1}), conninfo) as db:

        async def work(conn: Conn) -> tuple[str, bool]:
            keys = ApiKeyRepository()
            if saved is not None and await keys.find_active(conn, hash_token(saved)) is not None:
                return saved, False
            for key in await keys.list(conn, include_revoked=False):
                if key.name == DEMO_KEY_NAME:
                    await revoke_key(conn, key.id, actor="demo")
            created = await create_key(conn, name=DEMO_KEY_NAME, role="admin", actor="demo")
            return created.token, True

        token, fresh = await db.run(work)
    if fresh:
        save_demo_key(path, token)
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
