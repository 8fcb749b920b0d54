"""The FastAPI application: `create_app(settings, ...)` and the lifespan that opens its resources.

Nothing is opened at import or in `create_app`: the lifespan opens the pool (unless one is
given), the Klaviyo client (when KLAVIYO_API_KEY is set, unless one is given), the cache
(Redis when REDIS_URL is set, else in process) and the sync service, and closes them in reverse.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from klaviyo_analytics import wiring
from klaviyo_analytics.analytics.compute import Workers
from klaviyo_analytics.api.auth import Authenticator, TokenBucket
from klaviyo_analytics.api.cache import Cache, MemoryCache, RedisCache, groups_for_stream
from klaviyo_analytics.api.deps import AppState
from klaviyo_analytics.api.errors import install_error_handlers
from klaviyo_analytics.api.routes import account, admin, analytics, customers, dashboard, ops, sync
from klaviyo_analytics.api.syncs import SyncManager
from klaviyo_analytics.config import Settings
from klaviyo_analytics.db.pool import Database
from klaviyo_analytics.klaviyo import KlaviyoClient
from klaviyo_analytics.monitoring.metrics import ApiMetrics
from klaviyo_analytics.web import routes as web

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class RequestMetrics:
    """Count requests by method, route template and status, and time them (pure ASGI)."""

    def __init__(self, app: ASGIApp, metrics: Callable[[], ApiMetrics | None]) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            metrics = self.metrics()
            if metrics is not None:
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                metrics.observe_request(
                    scope["method"], template, status, time.perf_counter() - started
                )


def create_app(
    settings: Settings,
    *,
    database: Database | None = None,
    conninfo: str | None = None,
    klaviyo: KlaviyoClient | None = None,
    cache: Cache | None = None,
    clock: Clock = _utc_now,
    warm_workers: bool = True,
) -> FastAPI:
    """Build the API app; its lifespan opens what was not passed in and closes what it opened.

    `database`: an open pool to use (else one is opened on `conninfo`, or on DATABASE_URL /
    DB_*); `klaviyo`: an open client (else one is opened when KLAVIYO_API_KEY is set); `cache`:
    a backend (else Redis when REDIS_URL is set, or an in-process cache); `clock`: what "now"
    is, for "today" and for syncs; `warm_workers`: start the analysis worker processes with the
    app (in the background) rather than at the first fit.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with AsyncExitStack() as stack:
            db = database
            if db is None:
                target = conninfo or wiring.external_conninfo(settings)
                db = await stack.enter_async_context(
                    wiring.database(settings, target, application_name="klaviyo-analytics-api")
                )
                await wiring.attach_reader(settings, db, target, stack)
            metrics = ApiMetrics(slow_query_s=settings.db_slow_query_ms / 1000)
            previous_hook = db.on_query

            def on_query(seconds: float, failed: bool) -> None:
                metrics.observe_query(seconds, failed)
                if previous_hook is not None:
                    previous_hook(seconds, failed)

            db.on_query = on_query
            stack.callback(setattr, db, "on_query", previous_hook)

            backend = cache
            if backend is None:
                if settings.redis_url is not None:
                    backend = RedisCache.from_url(settings.redis_url.get_secret_value())
                else:
                    backend = MemoryCache(
                        max_entries=settings.cache_max_entries,
                        max_bytes=settings.cache_max_bytes,
                    )
                stack.push_async_callback(backend.aclose)

            client = klaviyo
            if client is None and settings.klaviyo_api_key is not None:
                client = await stack.enter_async_context(wiring.klaviyo_client(settings))

            workers = await stack.enter_async_context(
                Workers(settings.analysis_workers, warm=warm_workers)
            )
            auth = Authenticator(db)
            stack.push_async_callback(auth.aclose)
            state = AppState(
                settings=settings,
                db=db,
                cache=backend,
                metrics=metrics,
                auth=auth,
                limiter=TokenBucket(settings.api_rate_limit_per_minute),
                auth_failures=TokenBucket(settings.auth_failures_per_minute),
                klaviyo=client,
                syncs=None,
                clock=clock,
                workers=workers,
            )
            if client is not None:
                pending: set[asyncio.Task[int]] = set()

                def on_change(stream: str) -> None:
                    state.data_changed()
                    groups = groups_for_stream(stream)
                    if isinstance(state.cache, MemoryCache):
                        state.cache.invalidate_now(groups)
                        return
                    task = asyncio.get_running_loop().create_task(state.cache.invalidate(groups))
                    pending.add(task)
                    task.add_done_callback(pending.discard)

                service = wiring.sync_service(
                    db,
                    client,
                    options=wiring.sync_options(settings),
                    on_change=on_change,
                    clock=clock,
                )

                async def settle() -> None:
                    if pending:
                        await asyncio.gather(*pending, return_exceptions=True)

                state.syncs = SyncManager(service, settle=settle)
                stack.push_async_callback(state.syncs.aclose)
            app.state.resources = state
            metrics_ref[0] = metrics
            try:
                yield {}
            finally:
                metrics_ref[0] = None

    metrics_ref: list[ApiMetrics | None] = [None]
    app = FastAPI(
        title="Klaviyo Analytics API",
        version="1.0",
        description=(
            "Analytics of a Klaviyo account synced into PostgreSQL. Every /api route needs an API "
            "key (`Authorization: Bearer <key>` or `X-API-Key`); see docs/api.md."
        ),
        lifespan=lifespan,
        # Swagger UI and ReDoc load their scripts from a CDN; the server promises that nothing
        # leaves the machine, so they are off unless API_DOCS_ENABLED asks for them.
        docs_url="/docs" if settings.api_docs_enabled else None,
        redoc_url="/redoc" if settings.api_docs_enabled else None,
        # Starlette's trailing-slash redirect builds an absolute URL from the Host header.
        redirect_slashes=False,
    )
    install_error_handlers(app)
    app.add_middleware(RequestMetrics, metrics=lambda: metrics_ref[0])
    for router in (
        ops.router,
        account.router,
        dashboard.router,
        customers.router,
        analytics.router,
        sync.router,
        admin.router,
        web.router,
    ):
        app.include_router(router)
    return app
