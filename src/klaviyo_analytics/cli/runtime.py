"""Open the long-lived resources of a command from the settings, and close them on exit."""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg import sql

from klaviyo_analytics import resources
from klaviyo_analytics.config import Settings
from klaviyo_analytics.db.embedded import EmbeddedPostgres
from klaviyo_analytics.db.pool import Database
from klaviyo_analytics.errors import ConfigurationError
from klaviyo_analytics.klaviyo import KlaviyoClient
from klaviyo_analytics.private import private_dir
from klaviyo_analytics.resources import sync_options, sync_service

__all__ = [
    "check_reachable",
    "configure_logging",
    "database_server",
    "ensure_database",
    "klaviyo_client",
    "open_database",
    "stop_on_sigterm",
    "sync_options",
    "sync_service",
]

logger = logging.getLogger(__name__)


def configure_logging(level: str) -> None:
    """Send log records to stderr at the configured level (entry points only)."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request URL at INFO; ours are logged by the client at DEBUG already.
    logging.getLogger("httpx").setLevel(logging.WARNING)


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into a clean exit (status 0) that runs every `with` block's cleanup.

    Without this, SIGTERM kills the process outright, and uvicorn (which catches it while it
    serves) re-raises it after its own shutdown: the embedded PostgreSQL this process started
    would be left running either way.
    """

    def terminate(signum: int, frame: object) -> None:
        logger.info("SIGTERM received: shutting down")
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def database_server(settings: Settings) -> Iterator[str]:
    """Yield the connection string of the application's database.

    Starts the embedded server (and creates the database in it) when neither DATABASE_URL nor
    DB_HOST is set; stops it on exit if this process started it.
    """
    # The home holds the embedded data, backups and the demo store: the owner's alone.
    private_dir(settings.home_dir)
    if not settings.uses_embedded_database:
        yield resources.external_conninfo(settings)
        return
    with EmbeddedPostgres(settings.embedded_data_dir) as server:
        ensure_database(server.conninfo("postgres"), settings.db_name)
        yield server.conninfo(settings.db_name)


def ensure_database(admin_conninfo: str, name: str) -> None:
    """Create database `name` unless it exists."""
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if found is None:
            logger.info("creating database %s", name)
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


@asynccontextmanager
async def open_database(settings: Settings, conninfo: str) -> AsyncIterator[Database]:
    """Open a pool sized and timed by the settings."""
    async with resources.database(settings, conninfo) as database:
        yield database


async def check_reachable(settings: Settings, conninfo: str) -> None:
    """Wait for the server as the DB_* retry settings allow.

    Raises DatabaseUnavailableError naming host, port, database and user (never the password).
    """
    probe = resources.database(settings, conninfo, min_size=0, max_size=1)
    await probe.open()
    await probe.close()


def klaviyo_client(settings: Settings, **overrides: Any) -> KlaviyoClient:
    """Return a Klaviyo client for the configured account (not yet opened).

    Raises ConfigurationError when KLAVIYO_API_KEY is not set.
    """
    if settings.klaviyo_api_key is None:
        raise ConfigurationError("KLAVIYO_API_KEY is not set: a private API key is needed to sync")
    return KlaviyoClient(
        api_key=settings.klaviyo_api_key, base_url=settings.klaviyo_base_url, **overrides
    )
