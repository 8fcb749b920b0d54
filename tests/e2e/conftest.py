"""Browser fixtures: a sandbox store synced once, a real uvicorn server per test, headless Chromium.

The browser is Debian's `chromium` driven by Playwright (`playwright install` cannot download
browsers here); scripts/test.sh installs it. Without the binary these tests skip, saying so.
Every page records its requests, console errors and page errors; a test ends by checking that
nothing left 127.0.0.1 and that the console stayed clean (`Session.assert_clean`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from klaviyo_analytics.config import Settings
from klaviyo_analytics.sandbox.config import DEFAULT_END, SandboxConfig, StoreOptions
from klaviyo_analytics.sandbox.server import SandboxServer
from tests.e2e.live import LiveServer, create_keys, serve_dashboard
from tests.fixtures.database import PgServer
from tests.fixtures.sync import sync_service

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Four months of a small store: enough history for forecasts (4 weeks) and anomalies (2 weeks).
DASHBOARD_STORE = StoreOptions(seed=11, profiles=1500, days=120, campaigns=10, flows=5)
# The app's "now": a few minutes after the store's last event.
NOW = DEFAULT_END + timedelta(minutes=4)
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


def chromium_missing() -> str | None:
    """Say why browser tests cannot run here, or None when they can."""
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"no chromium binary at {CHROMIUM} (scripts/test.sh installs Debian's chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = chromium_missing()
    if reason is None:
        return
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def dashboard_sandbox() -> Iterator[SandboxServer]:
    """The store every browser test looks at (rate limits off)."""
    with SandboxServer(SandboxConfig(store=DASHBOARD_STORE, rate_limits=False)) as server:
        yield server


@pytest.fixture(scope="session")
def dashboard_template(
    pg_server: PgServer, template_db: str, dashboard_sandbox: SandboxServer
) -> Iterator[str]:
    """A database filled once by a full sync of the dashboard store; copied for each test."""
    name = f"ka_e2e_{uuid.uuid4().hex[:8]}"
    conninfo = pg_server.create_database(name, template=template_db)

    async def fill() -> None:
        async with sync_service(conninfo, dashboard_sandbox) as service:
            await service.sync_all()

    # A thread keeps this sync out of the session's event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, fill()).result()
    pg_server.seal_template(name)
    yield name
    pg_server.drop_database(name)


@dataclass
class Dashboard:
    """A running server over its own database, with an admin and a reader key."""

    base_url: str
    conninfo: str
    admin_key: str
    reader_key: str

    def get_json(self, path: str, **params: Any) -> Any:
        response = httpx.get(
            f"{self.base_url}{path}",
            params=params,
            headers={"Authorization": f"Bearer {self.admin_key}"},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def query(self, statement: str, params: Any = None) -> list[dict[str, Any]]:
        """Run one read-only SQL statement on the server's database; return its rows."""
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(self.conninfo, row_factory=dict_row) as conn:
            return list(conn.execute(statement, params).fetchall())  # type: ignore[arg-type]


DashboardFactory = Callable[..., Dashboard]


def dashboard_settings(tmp_path: Path, sandbox: SandboxServer | None) -> Settings:
    values: dict[str, Any] = {
        "data_home": tmp_path,
        "backup_dir": tmp_path / "backups",
        "api_rate_limit_per_minute": 1_000_000,
        "min_free_disk_mb": 0,
        "stale_after_minutes": 60,
    }
    if sandbox is not None:
        values |= {"klaviyo_api_key": sandbox.api_key, "klaviyo_base_url": sandbox.base_url}
    return Settings(**values)


@pytest.fixture
def make_dashboard(
    pg_server: PgServer, template_db: str, tmp_path: Path
) -> Iterator[DashboardFactory]:
    """Start servers: `make_dashboard(template=..., sandbox=...)` (template None: empty db)."""
    opened: list[tuple[LiveServer, str]] = []

    def start(*, template: str | None, sandbox: SandboxServer | None) -> Dashboard:
        name = f"ka_e2e_t_{uuid.uuid4().hex[:12]}"
        conninfo = pg_server.create_database(name, template=template or template_db)
        admin, reader = create_keys(conninfo)
        server = serve_dashboard(
            dashboard_settings(tmp_path, sandbox), conninfo, clock=lambda: NOW
        ).__enter__()
        opened.append((server, name))
        return Dashboard(server.base_url, conninfo, admin, reader)

    yield start
    for server, name in reversed(opened):
        server.__exit__(None, None, None)
        pg_server.drop_database(name)


@pytest.fixture
def dashboard(
    make_dashboard: DashboardFactory, dashboard_template: str, dashboard_sandbox: SandboxServer
) -> Dashboard:
    """A server on a copy of the synced store, able to sync from the sandbox."""
    return make_dashboard(template=dashboard_template, sandbox=dashboard_sandbox)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Chromium for one test. Not kept for the session: Playwright's sync API marks an event
    loop as running in this thread while it is open, which would break later asyncio tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Session:
    """A page and what it did: every request URL, console errors, uncaught page errors."""

    page: Any
    context: Any
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def api_requests(self) -> list[str]:
        return [u for u in self.requests if urlsplit(u).path.startswith("/api/")]

    def assert_clean(self) -> None:
        """Assert no request left 127.0.0.1 and the console showed no error."""
        outside = [
            u
            for u in self.requests
            if not (u.startswith(("data:", "blob:")) or urlsplit(u).hostname == "127.0.0.1")
        ]
        assert outside == [], f"requests left 127.0.0.1: {outside}"
        assert self.errors == [], f"browser console errors: {self.errors}"


SessionFactory = Callable[..., Session]


@pytest.fixture
def open_page(browser: Any) -> Iterator[SessionFactory]:
    """Open pages: `open_page(dashboard, key=..., viewport=DESKTOP)`; key None: no key stored."""
    contexts: list[Any] = []

    def start(
        dash: Dashboard,
        *,
        key: str | None = "admin",
        viewport: dict[str, int] = DESKTOP,
        path: str = "/",
        allow_statuses: tuple[int, ...] = (),
    ) -> Session:
        context = browser.new_context(
            viewport=viewport, locale="en-US", accept_downloads=True, timezone_id="UTC"
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        session = Session(page, context)
        page.on("request", lambda r: session.requests.append(r.url))

        def on_console(message: Any) -> None:
            # The browser logs every refused request; a test may expect some (401 before a key).
            allowed = any(f"status of {s}" in message.text for s in allow_statuses)
            if message.type == "error" and not allowed:
                session.errors.append(message.text)

        page.on("console", on_console)
        page.on("pageerror", lambda e: session.errors.append(f"page error: {e}"))
        token = {"admin": dash.admin_key, "reader": dash.reader_key}.get(key or "", key)
        if token:
            page.add_init_script(f"localStorage.setItem('klaviyo-analytics.api-key', {token!r})")
        page.goto(dash.base_url + path)
        return session

    yield start
    for context in contexts:
        context.close()


def wait_until_loaded(page: Any) -> None:
    """Wait until every panel has left its loading state (without eval: the page's CSP)."""
    page.wait_for_selector('body[data-loading="false"]', state="attached")
    for panel in (
        "overview",
        "revenue",
        "distribution",
        "engagement",
        "top",
        "table",
        "health",
        "sync",
    ):
        page.wait_for_selector(
            f'[data-panel="{panel}"]:not([data-state="loading"])', state="attached"
        )


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page and a first-screen screenshot under test-artifacts/; return the first."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-first-screen.png"))
    return path
