"""The one place that turns Settings into resources: the database server and its connection
string, pools, the Klaviyo client, the sync's options and the sync service with its refresh
hooks. Every composition root (the CLI commands, the API's lifespan, the scheduler, the test
fixtures) builds through here; the roots open and close what they get.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import Any

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from klaviyo_analytics.analytics.facts import refresh_facts, refresh_funnel
from klaviyo_analytics.config import Settings
from klaviyo_analytics.db.databases import ensure_database
from klaviyo_analytics.db.embedded import EmbeddedPostgres
from klaviyo_analytics.db.pool import READER_LOGIN, READER_ROLE, Database, build_conninfo
from klaviyo_analytics.errors import ConfigurationError, DatabaseUnavailableError
from klaviyo_analytics.klaviyo import KlaviyoClient
from klaviyo_analytics.private import private_dir
from klaviyo_analytics.retry import RetryPolicy
from klaviyo_analytics.sync.events import EventSyncOptions
from klaviyo_analytics.sync.runner import DataSyncService, SyncOptions, refresh_aggregates

logger = logging.getLogger(__name__)
# What runs after every event sync: the pre-aggregates; the order lines (product analytics) of
# the range and then the daily facts, which end with the customer and product facts of the
# profiles touched (those read the order lines, so `refresh_facts` rewrites the lines first);
# and the funnel's profile-days.
# Each hook is declared here once and called once per merged touched range (all of a
# backfill's windows make one range) as hook(conn, lo, hi, zone): it recomputes exactly what
# events in [lo, hi] can change and bounds its own statements (chunks of dates or buckets), so
# its cost follows the range and the profiles and messages touched. The hooks write disjoint
# tables and read only events and their own tables, so the refresh runs each in a
# transaction of its own, all at once (`sync.backfill.refresh_dirty`). A new family of
# derived data adds its hook here.
AFTER_EVENTS = (refresh_aggregates, refresh_facts, refresh_funnel)


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
        profile_predictions=settings.profile_predictions,
    )


def sync_service(
    db: Database, client: KlaviyoClient, *, options: SyncOptions, **kwargs: Any
) -> DataSyncService:
    """Return the sync service with `options` (`sync_options(settings)` in production), and
    after every event sync the pre-aggregates and the analytics facts refreshed for the
    touched range."""
    return DataSyncService(db, client, options=options, after_events=AFTER_EVENTS, **kwargs)


@contextmanager
def database_server(settings: Settings) -> Iterator[str]:
    """Yield the connection string of the application's database.

    Starts the embedded server (and creates the database in it) when neither DATABASE_URL nor
    DB_HOST is set; stops it on exit if this process started it.
    """
    # The home holds the embedded data, backups and the demo store: the owner's alone.
    private_dir(settings.home_dir)
    if not settings.uses_embedded_database:
        yield external_conninfo(settings)
        return
    with EmbeddedPostgres(settings.embedded_data_dir) as server:
        ensure_database(server.conninfo("postgres"), settings.db_name)
        yield server.conninfo(settings.db_name)


@asynccontextmanager
async def open_database(settings: Settings, conninfo: str) -> AsyncIterator[Database]:
    """Open a pool sized and timed by the settings."""
    async with database(settings, conninfo) as pool:
        yield pool


async def check_reachable(settings: Settings, conninfo: str) -> None:
    """Wait for the server as the DB_* retry settings allow.

    Raises DatabaseUnavailableError naming host, port, database and user (never the password).
    """
    probe = database(settings, conninfo, min_size=0, max_size=1)
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
