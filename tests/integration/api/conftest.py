"""API fixtures: the app on a database filled once per session by a sandbox sync.

The sync runs once into a template database; each test gets its own copy (CREATE DATABASE ...
TEMPLATE), so tests can write (syncs, keys, audit) without seeing each other.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from klaviyo_analytics.api.app import create_app
from klaviyo_analytics.api.auth import create_key, revoke_key
from klaviyo_analytics.api.cache import Cache
from klaviyo_analytics.config import Settings
from klaviyo_analytics.db.pool import Database
from klaviyo_analytics.db.repos.api_keys import ApiKeyRepository
from klaviyo_analytics.klaviyo import KlaviyoClient
from klaviyo_analytics.retry import RetryPolicy
from klaviyo_analytics.sandbox.config import DEFAULT_END
from klaviyo_analytics.sandbox.server import SandboxServer
from tests.fixtures.database import PgServer
from tests.fixtures.sync import sync_service

# The sandbox's store ends at DEFAULT_END; the app's "now" is just after it.
NOW = DEFAULT_END.replace(second=1)
STORE_TZ = "America/New_York"


def fixed_clock(moment: datetime = NOW) -> Callable[[], datetime]:
    return lambda: moment


@pytest.fixture(scope="session")
def synced_template(pg_server: PgServer, template_db: str, sandbox: SandboxServer) -> Iterator[str]:
    """A database filled by one full sandbox sync; copied for each test that needs data."""
    import asyncio

    name = f"ka_api_synced_{uuid.uuid4().hex[:8]}"
    conninfo = pg_server.create_database(name, template=template_db)

    async def fill() -> None:
        async with sync_service(conninfo, sandbox) as service:
            await service.sync_all()

    # A thread keeps this sync fixture out of the session's event loop.
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, fill()).result()
    pg_server.seal_template(name)
    yield name
    pg_server.drop_database(name)


@pytest.fixture
def synced_conninfo(pg_server: PgServer, synced_template: str) -> Iterator[str]:
    """This test's own copy of the synced database."""
    name = f"ka_api_{uuid.uuid4().hex[:12]}"
    conninfo = pg_server.create_database(name, template=synced_template)
    yield conninfo
    pg_server.drop_database(name)


@dataclass
class Api:
    """A running app with an HTTP client and two keys."""

    app: FastAPI
    http: httpx.AsyncClient
    db: Database
    admin_key: str
    reader_key: str

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    @property
    def reader(self) -> dict[str, str]:
        return {"X-API-Key": self.reader_key}

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.http.get(path, params=params, headers=self.reader)

    async def get_json(self, path: str, **params: Any) -> Any:
        response = await self.get(path, **params)
        assert response.status_code == 200, response.text
        return response.json()


def api_settings(tmp_path: Path, sandbox: SandboxServer | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_home": tmp_path,
        "backup_dir": tmp_path / "backups",
        "api_rate_limit_per_minute": 1_000_000,
        "min_free_disk_mb": 0,
        # Tests choose their cache; a REDIS_URL in the environment must not leak between them.
        "redis_url": None,
        "account_timezone": None,
    }
    if sandbox is not None:
        values |= {"klaviyo_api_key": sandbox.api_key, "klaviyo_base_url": sandbox.base_url}
    return Settings(**(values | overrides))


ApiFactory = Callable[..., AbstractAsyncContextManager[Api]]


async def _revoke_test_keys(conn: Any) -> None:
    for key in await ApiKeyRepository().list(conn, include_revoked=False):
        if key.name in ("test-admin", "test-reader"):
            await revoke_key(conn, key.id, actor="tests")


@pytest_asyncio.fixture
async def make_api(tmp_path: Path, sandbox: SandboxServer) -> AsyncIterator[ApiFactory]:
    """Open apps: `async with make_api(conninfo, klaviyo=True, cache=..., clock=...) as api`."""

    @asynccontextmanager
    async def open_api(
        conninfo: str,
        *,
        klaviyo: bool = True,
        cache: Cache | None = None,
        clock: Callable[[], datetime] | None = None,
        **overrides: Any,
    ) -> AsyncIterator[Api]:
        settings = api_settings(tmp_path, sandbox if klaviyo else None, **overrides)
        async with Database(
            conninfo, min_size=1, max_size=10, retry=RetryPolicy(attempts=3, base_s=0.01)
        ) as db:
            client = (
                KlaviyoClient(
                    api_key=sandbox.api_key,
                    base_url=sandbox.base_url,
                    rate_limits_enabled=False,
                    retry=RetryPolicy(attempts=4, base_s=0.01, cap_s=0.1),
                )
                if klaviyo
                else None
            )
            try:
                # Workers start at a test's first fit, not with every app (each costs ~2 CPU-s).
                app = create_app(
                    settings,
                    database=db,
                    klaviyo=client,
                    cache=cache,
                    clock=clock or fixed_clock(),
                    warm_workers=False,
                )
                # A second app on the same database replaces the first one's keys (names of
                # active keys are unique per role).
                await db.run(_revoke_test_keys)
                admin = await db.run(lambda c: create_key(c, name="test-admin", role="admin"))
                reader = await db.run(lambda c: create_key(c, name="test-reader", role="reader"))
                async with (
                    app.router.lifespan_context(app),
                    httpx.AsyncClient(
                        transport=httpx.ASGITransport(app=app), base_url="http://api.test"
                    ) as http,
                ):
                    yield Api(app, http, db, admin.token, reader.token)
            finally:
                if client is not None:
                    await client.aclose()

    yield open_api


@pytest_asyncio.fixture
async def api(make_api: ApiFactory, synced_conninfo: str) -> AsyncIterator[Api]:
    """The app on a copy of the synced database."""
    async with make_api(synced_conninfo) as opened:
        yield opened


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]
