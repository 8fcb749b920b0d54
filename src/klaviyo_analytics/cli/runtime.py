"""Open the long-lived resources of a command from the settings, and close them on exit."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from psycopg import sql

from klaviyo_analytics.analytics.facts import refresh_facts
from klaviyo_analytics.config import Settings
from klaviyo_analytics.db.embedded import EmbeddedPostgres
from klaviyo_analytics.db.pool import Database, build_conninfo
from klaviyo_analytics.errors import ConfigurationError
from klaviyo_analytics.klaviyo import KlaviyoClient
from klaviyo_analytics.retry import RetryPolicy
from klaviyo_analytics.sync.events import EventSyncOptions
from klaviyo_analytics.sync.runner import DataSyncService, SyncOptions, refresh_aggregates

logger = logging.getLogger(__name__)


def configure_logging(level: str) -> None:
    """Send log records to stderr at the configured level (entry points only)."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request URL at INFO; ours are logged by the client at DEBUG already.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def retry_policy(settings: Settings) -> RetryPolicy:
    """Return the database retry policy described by the DB_* settings."""
    return RetryPolicy(
        attempts=settings.db_max_retries + 1,
        base_s=settings.db_initial_retry_delay_ms / 1000,
        cap_s=settings.db_max_retry_delay_ms / 1000,
        factor=settings.db_retry_factor,
    )


@contextmanager
def database_server(settings: Settings) -> Iterator[str]:
    """Yield the connection string of the application's database.

    Starts the embedded server (and creates the database in it) when neither DATABASE_URL nor
    DB_HOST is set; stops it on exit if this process started it.
    """
    if settings.database_url is not None:
        yield settings.database_url.get_secret_value()
        return
    if not settings.uses_embedded_database:
        yield build_conninfo(
            host=settings.db_host,
            port=settings.db_port,
            user=settings.db_user,
            password=settings.db_password.get_secret_value(),
            dbname=settings.db_name,
            ssl=settings.db_ssl,
        )
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
    database = Database(
        conninfo,
        min_size=settings.db_min_connections,
        max_size=settings.db_max_connections,
        idle_timeout_s=settings.db_idle_timeout_ms / 1000,
        connect_timeout_s=settings.db_connection_timeout_ms / 1000,
        statement_timeout_ms=settings.db_statement_timeout_ms,
        slow_query_ms=settings.db_slow_query_ms,
        retry=retry_policy(settings),
    )
    async with database:
        yield database


async def check_reachable(settings: Settings, conninfo: str) -> None:
    """Wait for the server as the DB_* retry settings allow.

    Raises DatabaseUnavailableError naming host, port, database and user (never the password).
    """
    probe = Database(
        conninfo,
        min_size=0,
        max_size=1,
        connect_timeout_s=settings.db_connection_timeout_ms / 1000,
        retry=retry_policy(settings),
    )
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


def sync_service(
    settings: Settings, db: Database, client: KlaviyoClient, **kwargs: Any
) -> DataSyncService:
    """Return the sync service of a command: the settings' options, and after every event
    sync the pre-aggregates and the analytics facts refreshed for the touched range."""
    return DataSyncService(
        db,
        client,
        options=sync_options(settings),
        after_events=(refresh_aggregates, refresh_facts),
        **kwargs,
    )


def sync_options(settings: Settings) -> SyncOptions:
    """Return the sync's options from the settings."""
    return SyncOptions(
        events=EventSyncOptions(
            concurrency=settings.sync_concurrency, archive_raw=settings.archive_raw_responses
        ),
        default_backfill_days=settings.sync_backfill_days,
        archive_raw=settings.archive_raw_responses,
        timezone=settings.account_timezone,
    )
