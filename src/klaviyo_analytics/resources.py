"""Build the long-lived resources from the settings: shared by the composition roots
(the CLI commands and the API's lifespan), which open them; nothing here opens anything.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from klaviyo_analytics.analytics.facts import refresh_facts
from klaviyo_analytics.config import Settings
from klaviyo_analytics.db.pool import READER_LOGIN, READER_ROLE, Database, build_conninfo
from klaviyo_analytics.errors import DatabaseUnavailableError
from klaviyo_analytics.klaviyo import KlaviyoClient
from klaviyo_analytics.retry import RetryPolicy
from klaviyo_analytics.sync.events import EventSyncOptions
from klaviyo_analytics.sync.runner import DataSyncService, SyncOptions, refresh_aggregates

logger = logging.getLogger(__name__)


def retry_policy(settings: Settings) -> RetryPolicy:
    """Return the database retry policy described by the DB_* settings."""
    return RetryPolicy(
        attempts=settings.db_max_retries + 1,
        base_s=settings.db_initial_retry_delay_ms / 1000,
        cap_s=settings.db_max_retry_delay_ms / 1000,
        factor=settings.db_retry_factor,
    )


def external_conninfo(settings: Settings) -> str:
    """Return the connection string of a configured server: DATABASE_URL, else DB_*."""
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    return build_conninfo(
        host=settings.db_host,
        port=settings.db_port,
        user=settings.db_user,
        password=settings.db_password.get_secret_value(),
        dbname=settings.db_name,
        ssl=settings.db_ssl,
    )


def reader_conninfo(settings: Settings, conninfo: str) -> str:
    """Return `conninfo` logging in as the API's reader login (DB_READER_PASSWORD if set)."""
    params = {k: str(v) for k, v in conninfo_to_dict(conninfo).items() if v is not None}
    params["user"] = READER_LOGIN
    params.pop("password", None)
    if settings.db_reader_password is not None:
        params["password"] = settings.db_reader_password.get_secret_value()
    return make_conninfo(**params)


async def attach_reader(
    settings: Settings, db: Database, conninfo: str, stack: AsyncExitStack
) -> None:
    """Open the API's read pool as the reader login and attach it to `db` (closed by `stack`).

    When that login cannot connect (an external server where it has no password), read paths
    keep using SET ROLE on `db`'s login, and a warning says so.
    """
    reader = database(
        settings,
        reader_conninfo(settings, conninfo),
        min_size=min(1, settings.db_min_connections),
        max_size=max(1, settings.db_max_connections // 2),
        application_name="klaviyo-analytics-api-reader",
        retry=RetryPolicy(attempts=1),
    )
    try:
        await stack.enter_async_context(reader)
    except DatabaseUnavailableError as exc:
        logger.warning(
            "the reader login %s cannot connect (%s); read paths use SET ROLE %s on the "
            "application's login instead (set DB_READER_PASSWORD, see docs/database.md)",
            READER_LOGIN,
            exc,
            READER_ROLE,
        )
        return
    db.reader = reader
    stack.callback(setattr, db, "reader", None)


def database(settings: Settings, conninfo: str, **overrides: Any) -> Database:
    """Return a pool (not yet open) sized and timed by the DB_* settings."""
    options: dict[str, Any] = {
        "min_size": settings.db_min_connections,
        "max_size": settings.db_max_connections,
        "idle_timeout_s": settings.db_idle_timeout_ms / 1000,
        "connect_timeout_s": settings.db_connection_timeout_ms / 1000,
        "statement_timeout_ms": settings.db_statement_timeout_ms,
        "slow_query_ms": settings.db_slow_query_ms,
        "retry": retry_policy(settings),
    }
    return Database(conninfo, **{**options, **overrides})


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


def sync_service(
    settings: Settings, db: Database, client: KlaviyoClient, **kwargs: Any
) -> DataSyncService:
    """Return the sync service: the settings' options, and after every event sync the
    pre-aggregates and the analytics facts refreshed for the touched range."""
    return DataSyncService(
        db,
        client,
        options=sync_options(settings),
        after_events=(refresh_aggregates, refresh_facts),
        **kwargs,
    )
