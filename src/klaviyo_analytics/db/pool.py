"""The connection pool: sizing, timeouts, retries of transient errors, slow-query log, metrics.

`Database` wraps a psycopg_pool `AsyncConnectionPool`. Work is handed to `Database.run(fn)`,
which runs `fn(conn)` in one transaction and retries the whole transaction when the failure was
transient (connection lost, server shutting down, serialization failure, deadlock), never when
the statement itself was wrong or timed out.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, LiteralString, Self, TypeVar

import psycopg
from psycopg import AsyncConnection, AsyncCursor, errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from klaviyo_analytics.conninfo import parse_conninfo
from klaviyo_analytics.db.outage import (
    CONNECTION_SQLSTATES,
    PROBE_TIMEOUT_S,
    UNAVAILABLE,
    DatabaseDownError,
    OutageGuard,
    failed_with,
    is_connection_problem,
)
from klaviyo_analytics.errors import DatabaseError, DatabaseUnavailableError, FatalError
from klaviyo_analytics.retry import RetryPolicy

logger = logging.getLogger(__name__)
slow_logger = logging.getLogger("klaviyo_analytics.db.slow_query")

T = TypeVar("T")
Conn = AsyncConnection[DictRow]
QueryObserver = Callable[[float, bool], None]

# SQLSTATEs worth another try: the work was fine, the moment was not.
# Serialization failure, deadlock, too many connections: a retry of the same work may pass.
TRANSIENT_SQLSTATES = CONNECTION_SQLSTATES | {"40001", "40P01", "53300"}
READER_ROLE = "analytics_reader"
# The login of the API's read pool (migration 0012): analytics_reader's rights and no more.
READER_LOGIN = "klaviyo_api_reader"


class StatementTimeoutError(DatabaseError, FatalError):
    """A statement ran longer than the configured statement timeout."""


class QueryError(DatabaseError, FatalError):
    """The server refused a statement (a constraint, a privilege, a bug): not worth a retry.

    `sqlstate` is the server's code (e.g. "42501" for a missing privilege); the message is the
    server's first line, which names the object, never a value bound to the statement.
    """

    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate

    def __reduce__(self) -> tuple[type[QueryError], tuple[str, str | None]]:
        return (type(self), (str(self), self.sqlstate))


def is_transient(exc: BaseException) -> bool:
    """Say whether a database error is worth retrying (the statement itself was not at fault)."""
    return failed_with(exc, TRANSIENT_SQLSTATES)


def build_conninfo(
    *, host: str, port: int, user: str, password: str | None, dbname: str, ssl: bool
) -> str:
    """Return a libpq connection string from separate settings."""
    return make_conninfo(
        host=host,
        port=str(port),
        user=user,
        password=password or None,
        dbname=dbname,
        sslmode="require" if ssl else "prefer",
    )


def describe_target(conninfo: str) -> str:
    """Return `user@host:port/dbname` for messages: everything but the password."""
    params = conninfo_to_dict(conninfo)
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    return f"user {params.get('user') or '(default)'} at {host}:{port}, database {params.get('dbname') or '(default)'}"


@dataclass
class QueryStats:
    """Counters of statements run through the pool's connections."""

    queries: int = 0
    slow_queries: int = 0
    errors: int = 0
    acquire_timeouts: int = 0
    statement_timeouts: int = 0
    retries: int = 0
    total_seconds: float = 0.0


@dataclass(frozen=True)
class PoolMetrics:
    """A snapshot of the pool for dashboards and /metrics."""

    size: int
    max_size: int
    idle: int
    in_use: int
    waiting: int
    utilisation_pct: float
    oldest_connection_age_s: float
    mean_connection_age_s: float
    connections_errors: int
    connections_lost: int
    requests_errors: int
    acquire_timeouts: int
    queries: int
    slow_queries: int
    query_errors: int
    statement_timeouts: int
    retries: int


@dataclass(frozen=True)
class HealthReport:
    """The outcome of `Database.health_check()`: `problems` says what is wrong, if anything."""

    ok: bool
    latency_ms: float
    server_version: str | None
    problems: tuple[str, ...]


def _timed_cursor_class(database: Database) -> type[AsyncCursor[Any]]:
    class TimedCursor(AsyncCursor[Any]):
        async def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Self:
            started = time.perf_counter()
            failed = False
            try:
                return await super().execute(query, params, **kwargs)
            except psycopg.Error:
                failed = True
                raise
            finally:
                database._observe(self, query, time.perf_counter() - started, failed)

    return TimedCursor


@dataclass
class Database:
    """A pool of connections to one database, with the project's policies applied."""

    conninfo: str = field(repr=False)
    min_size: int = 1
    max_size: int = 10
    idle_timeout_s: float = 30.0
    connect_timeout_s: float = 5.0
    statement_timeout_ms: int = 30_000
    slow_query_ms: int = 500
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    on_query: QueryObserver | None = None
    application_name: str = "klaviyo-analytics"
    # A pool logged in as READER_LOGIN: read-only runs go there, so RESET ROLE inside them
    # cannot regain this pool's (perhaps superuser) login.
    reader: Database | None = field(default=None, repr=False)
    stats: QueryStats = field(default_factory=QueryStats, init=False)
    _pool: AsyncConnectionPool[Conn] | None = field(default=None, init=False, repr=False)
    _born: weakref.WeakKeyDictionary[Conn, float] = field(
        default_factory=weakref.WeakKeyDictionary, init=False, repr=False
    )
    _kwargs: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _guard: OutageGuard | None = field(default=None, init=False, repr=False)
    _retiring: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)

    @property
    def target(self) -> str:
        """Describe the server and database, without the password."""
        return describe_target(self.conninfo)

    def __repr__(self) -> str:
        return f"Database({self.target}, pool {self.min_size}..{self.max_size})"

    @property
    def pool(self) -> AsyncConnectionPool[Conn]:
        """Return the open pool.

        Raises DatabaseUnavailableError before `open()` or after `close()`.
        """
        if self._pool is None:
            raise DatabaseUnavailableError(f"the pool for {self.target} is not open")
        return self._pool

    async def open(self) -> Self:
        """Open the pool, retrying an unreachable server as the retry policy allows.

        Raises ConfigurationError (never retried) when the connection string is malformed;
        DatabaseUnavailableError naming host, port, database and user (never the password)
        when no connection can be made.
        """
        parse_conninfo(self.conninfo)
        # Every session computes in UTC whatever the server's or database's default zone:
        # the SQL adds day intervals to instants (attribution and funnel windows), which in a
        # zone with daylight saving would be 23 or 25 hours on the change's day. Local dates
        # are always taken with an explicit `AT TIME ZONE` of the store's zone.
        options = f"-c statement_timeout={self.statement_timeout_ms} -c TimeZone=UTC"
        kwargs: dict[str, Any] = {
            "row_factory": dict_row,
            "cursor_factory": _timed_cursor_class(self),
            "connect_timeout": max(2, round(self.connect_timeout_s)),
            "options": options,
            "application_name": self.application_name,
        }
        self._kwargs = kwargs
        await self._check_reachable(kwargs)
        pool = self._new_pool()
        await pool.open(wait=self.min_size > 0, timeout=self.connect_timeout_s * 2)
        self._pool = pool
        self._guard = OutageGuard(self.target)
        return self

    def _new_pool(self) -> AsyncConnectionPool[Conn]:
        return AsyncConnectionPool(
            self.conninfo,
            min_size=self.min_size,
            max_size=self.max_size,
            max_idle=self.idle_timeout_s,
            timeout=self.connect_timeout_s,
            kwargs=self._kwargs,
            configure=self._configure,
            open=False,
            name="klaviyo-analytics",
        )

    async def close(self) -> None:
        """Close the pool and every connection in it."""
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        """Lend a connection from the pool (the caller owns any transaction).

        Raises DatabaseUnavailableError at once while the server is known to be down, and when
        no connection is free within the connection timeout.
        """
        await self._ensure_up()
        try:
            async with self.pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            self.stats.acquire_timeouts += 1
            self._mark_suspect()
            logger.warning(
                "no database connection free within %gs (%s, pool max %d)",
                self.connect_timeout_s,
                self.target,
                self.max_size,
            )
            raise DatabaseUnavailableError(
                f"no database connection free within {self.connect_timeout_s:g}s"
            ) from exc

    async def run(self, work: Callable[[Conn], Awaitable[T]], *, readonly: bool = False) -> T:
        """Run `work(conn)` in one transaction, retrying the whole of it on transient errors.

        With `readonly`, the transaction is read-only and runs as the `analytics_reader` role
        (on the `reader` pool when one is attached).
        Raises DatabaseUnavailableError when retries are exhausted, StatementTimeoutError when
        a statement hits the statement timeout, and QueryError (with the SQLSTATE) when the
        server refuses a statement; what `work` raises itself passes through.
        """
        if readonly and self.reader is not None:
            return await self.reader.run(work, readonly=True)
        started = self.retry.clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self.connection() as conn, conn.transaction():
                    if readonly:
                        await conn.execute("SET TRANSACTION READ ONLY")
                        await conn.execute(
                            sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(READER_ROLE))
                        )
                    return await work(conn)
            except errors.QueryCanceled as exc:
                self.stats.statement_timeouts += 1
                raise StatementTimeoutError(
                    f"statement cancelled after the {self.statement_timeout_ms} ms statement timeout "
                    f"({self.target})"
                ) from exc
            except (psycopg.Error, DatabaseUnavailableError) as exc:
                cause = exc.__cause__ if isinstance(exc, DatabaseUnavailableError) else exc
                if isinstance(exc, DatabaseDownError):
                    cause = exc  # each attempt is instant; the policy decides how long to wait
                elif cause is None or not is_transient(cause):
                    if isinstance(exc, psycopg.Error):
                        raise QueryError(_first_line(exc), exc.sqlstate) from exc
                    raise
                if is_connection_problem(cause):
                    # The next attempt probes the server first and fails fast if it is gone.
                    self._mark_suspect()
                delay = self.retry.delay_s(attempt)
                if not self.retry.allows(attempt, started, delay):
                    logger.warning(
                        "database unavailable after %d attempts (%s): %s",
                        attempt,
                        self.target,
                        _first_line(cause),
                    )
                    raise DatabaseUnavailableError(
                        f"{UNAVAILABLE} after {attempt} attempts"
                    ) from exc
                self.stats.retries += 1
                logger.warning(
                    "transient database error (attempt %d of %d), retrying in %.2fs: %s",
                    attempt,
                    self.retry.attempts,
                    delay,
                    _first_line(cause),
                )
                await self.retry.sleep(delay)

    async def fetch_all(
        self,
        query: LiteralString | sql.SQL | sql.Composed,
        params: Mapping[str, Any] | tuple[Any, ...] = (),
        *,
        readonly: bool = True,
    ) -> list[dict[str, Any]]:
        """Run one query in its own transaction and return every row as a dict."""

        async def work(conn: Conn) -> list[dict[str, Any]]:
            cur = await conn.execute(query, params)
            return list(await cur.fetchall())

        return await self.run(work, readonly=readonly)

    def metrics(self) -> PoolMetrics:
        """Return a snapshot of the pool's size, use, connection ages and error counters."""
        pool_stats = self.pool.get_stats() if self._pool is not None else {}
        size = pool_stats.get("pool_size", 0)
        idle = pool_stats.get("pool_available", 0)
        now = time.monotonic()
        ages = [now - born for born in list(self._born.values())]
        return PoolMetrics(
            size=size,
            max_size=self.max_size,
            idle=idle,
            in_use=max(0, size - idle),
            waiting=pool_stats.get("requests_waiting", 0),
            utilisation_pct=round(100.0 * max(0, size - idle) / self.max_size, 1),
            oldest_connection_age_s=round(max(ages, default=0.0), 3),
            mean_connection_age_s=round(sum(ages) / len(ages), 3) if ages else 0.0,
            connections_errors=pool_stats.get("connections_errors", 0),
            connections_lost=pool_stats.get("connections_lost", 0),
            requests_errors=pool_stats.get("requests_errors", 0),
            acquire_timeouts=self.stats.acquire_timeouts,
            queries=self.stats.queries,
            slow_queries=self.stats.slow_queries,
            query_errors=self.stats.errors,
            statement_timeouts=self.stats.statement_timeouts,
            retries=self.stats.retries,
        )

    async def health_check(self, timeout_s: float = 2.0) -> HealthReport:
        """Check that a connection can be had and answers; say what is wrong if not."""
        problems: list[str] = []
        version: str | None = None
        started = time.perf_counter()
        try:
            await self._ensure_up()
            async with self.pool.connection(timeout=timeout_s) as conn:
                cur = await conn.execute("SELECT current_setting('server_version') AS v")
                row = await cur.fetchone()
                version = row["v"] if row else None
        except PoolTimeout:
            self._mark_suspect()
            problems.append(f"no connection free within {timeout_s:g}s (pool max {self.max_size})")
        except (psycopg.Error, DatabaseUnavailableError) as exc:
            if isinstance(exc, psycopg.Error) and is_connection_problem(exc):
                self._mark_suspect()
            # The target and libpq's text name the user, socket and database: log them only.
            logger.warning("database not answering (%s): %s", self.target, _first_line(exc))
            problems.append("database not answering")
        latency_ms = (time.perf_counter() - started) * 1000
        if self._pool is not None:
            snapshot = self.metrics()
            if snapshot.waiting > 0 and snapshot.in_use >= self.max_size:
                problems.append(f"pool exhausted: {snapshot.waiting} clients waiting")
        return HealthReport(
            ok=not problems,
            latency_ms=round(latency_ms, 2),
            server_version=version,
            problems=tuple(problems),
        )

    # -- internals ---------------------------------------------------------------------------

    def _mark_suspect(self) -> None:
        if self._guard is not None:
            self._guard.suspect = True

    async def _ensure_up(self) -> None:
        """Fail fast while the server is known to be down (see `outage`)."""
        if self._guard is not None and self._pool is not None:
            await self._guard.check(self._probe, self._renew_pool)

    async def _renew_pool(self) -> None:
        old, fresh = self._pool, self._new_pool()
        await fresh.open(wait=False)
        self._pool = fresh
        if old is not None:
            # Closing waits for its background workers; no request should.
            task = asyncio.get_running_loop().create_task(old.close(timeout=5))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _probe(self) -> str | None:
        """Return why a fresh connection cannot be made within PROBE_TIMEOUT_S, or None."""
        kwargs = {k: v for k, v in self._kwargs.items() if k != "cursor_factory"}
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                conn = await AsyncConnection.connect(self.conninfo, **kwargs)
                await conn.close()
        except TimeoutError:
            return f"no answer within {PROBE_TIMEOUT_S:g}s"
        except psycopg.Error as exc:
            return _first_line(exc)
        return None

    async def _check_reachable(self, kwargs: dict[str, Any]) -> None:
        started = self.retry.clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                conn = await AsyncConnection.connect(self.conninfo, **kwargs)
                await conn.close()
                return
            except psycopg.OperationalError as exc:
                delay = self.retry.delay_s(attempt)
                if not self.retry.allows(attempt, started, delay):
                    # libpq's connection errors quote no password (the string was parsed
                    # before any connection was tried), so none is replaced in them.
                    raise DatabaseUnavailableError(
                        f"cannot connect to PostgreSQL as {self.target} after {attempt} attempts: "
                        f"{_first_line(exc)}"
                    ) from None
                logger.warning(
                    "cannot connect to PostgreSQL as %s (attempt %d of %d), retrying in %.2fs",
                    self.target,
                    attempt,
                    self.retry.attempts,
                    delay,
                )
                await self.retry.sleep(delay)

    async def _configure(self, conn: Conn) -> None:
        self._born[conn] = time.monotonic()

    def _observe(self, cursor: AsyncCursor[Any], query: Any, seconds: float, failed: bool) -> None:
        self.stats.queries += 1
        self.stats.total_seconds += seconds
        if failed:
            self.stats.errors += 1
        if self.on_query is not None:
            self.on_query(seconds, failed)
        if seconds * 1000 >= self.slow_query_ms:
            self.stats.slow_queries += 1
            text = (
                query.as_string(cursor.connection)
                if isinstance(query, sql.Composable)
                else str(query)
            )
            # Parameter values are never logged: they may hold personal data.
            slow_logger.warning(
                "slow query: %.1f ms, %d rows: %s",
                seconds * 1000,
                cursor.rowcount,
                " ".join(text.split())[:1000],
            )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
