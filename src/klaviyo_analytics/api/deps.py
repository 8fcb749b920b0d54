"""What routes share: the app's resources, the caller, the date range, and cached answers."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import Response
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from klaviyo_analytics.analytics.compute import Workers
from klaviyo_analytics.analytics.errors import InvalidRangeError
from klaviyo_analytics.analytics.periods import (
    PRESETS,
    DateRange,
    local_today,
    resolve_range,
    store_timezone,
)
from klaviyo_analytics.api.auth import Authenticator, Principal, TokenBucket
from klaviyo_analytics.api.cache import Cache, cache_key
from klaviyo_analytics.api.errors import (
    AuthenticationRequiredError,
    ForbiddenError,
    InvalidQueryError,
    RateLimitedError,
)
from klaviyo_analytics.api.models import Sourced
from klaviyo_analytics.api.syncs import SyncManager
from klaviyo_analytics.config import Settings
from klaviyo_analytics.db.pool import Database
from klaviyo_analytics.db.repos.api_keys import AuditRepository
from klaviyo_analytics.klaviyo import KlaviyoClient
from klaviyo_analytics.monitoring.health import Readiness
from klaviyo_analytics.monitoring.metrics import ApiMetrics

TIMEZONE_CACHE_S = 60.0
DATE_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# The dates a request may name. Every range's previous range and its bounds in any zone stay
# far inside what Python and PostgreSQL represent (year 1 and 9999 overflow in arithmetic).
EARLIEST_DATE = date(1970, 1, 1)
LATEST_DATE = date(2199, 12, 31)
# Failed authentications allowed per client address per minute before 429.
AUTH_FAILURES_PER_MINUTE = 30
# Klaviyo answers a minute the server gives readers before a stream's first sync (shared).
FALLBACK_ANSWERS_PER_MINUTE = 10

_audit = AuditRepository()


@dataclass
class AppState:
    """The long-lived resources of one app, opened by its lifespan."""

    settings: Settings
    db: Database
    cache: Cache
    metrics: ApiMetrics
    auth: Authenticator
    limiter: TokenBucket
    klaviyo: KlaviyoClient | None
    syncs: SyncManager | None
    clock: Callable[[], datetime]
    workers: Workers
    generation: int = 0
    fallback_budget: TokenBucket = field(
        default_factory=lambda: TokenBucket(FALLBACK_ANSWERS_PER_MINUTE)
    )
    fallback_syncs: set[str] = field(default_factory=set)
    readiness: tuple[float, Readiness] | None = None
    readiness_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    readiness_checks: int = 0
    auth_failures: TokenBucket = field(
        default_factory=lambda: TokenBucket(AUTH_FAILURES_PER_MINUTE)
    )
    _timezone: tuple[float, str] | None = field(default=None, repr=False)

    async def timezone(self) -> str:
        """Return the store's time zone (remembered for a minute, forgotten after a sync)."""
        now = time.monotonic()
        if self._timezone is not None and self._timezone[0] > now:
            return self._timezone[1]
        override = self.settings.account_timezone
        tz = await self.db.run(lambda c: store_timezone(c, override), readonly=True)
        self._timezone = (now + TIMEZONE_CACHE_S, tz)
        return tz

    def data_changed(self) -> None:
        """Note that synced data changed: cached answers being computed must not be stored."""
        self.generation += 1
        self._timezone = None


def _query_names(dependant: Dependant) -> frozenset[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return frozenset(names)


_known_query: dict[int, frozenset[str]] = {}


async def known_query(request: Request) -> None:
    """Refuse query parameters the route does not declare (they would only split the cache).

    Raises InvalidQueryError (422) naming the first unknown parameter and the accepted ones.
    """
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    allowed = _known_query.get(id(route))
    if allowed is None:
        allowed = _known_query[id(route)] = _query_names(route.dependant)
    for name in request.query_params:
        if name not in allowed:
            accepted = ", ".join(sorted(allowed)) or "none"
            raise InvalidQueryError(name, f"unknown parameter; this route accepts: {accepted}")


KnownQuery = Depends(known_query)


def app_state(request: Request) -> AppState:
    """Return the app's resources (set by the lifespan)."""
    state: AppState = request.app.state.resources
    return state


State = Annotated[AppState, Depends(app_state)]

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key")
bearer_header = _bearer
api_key_header = _header


async def caller(
    request: Request,
    state: State,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> Principal:
    """Return who is calling, after checking the key and the key's rate limit.

    Raises AuthenticationRequiredError (401) without a valid key, RateLimitedError (429) when
    the key has spent its budget.
    """
    address = request.client.host if request.client is not None else "unknown"
    wait_s = state.auth_failures.wait_s(address)
    if wait_s > 0:
        raise RateLimitedError(
            f"too many failed authentications from this address (at most "
            f"{state.auth_failures.rate_per_minute} a minute)",
            retry_after_s=wait_s,
        )
    token = bearer.credentials if bearer is not None else header
    problem: str | None = None
    principal: Principal | None = None
    if not token:
        problem = "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
    elif len(token) > 512:
        problem = "the API key is not valid"
    else:
        principal = await state.auth.principal(token)
        if principal is None:
            problem = "the API key is unknown or revoked"
    if principal is None:
        state.auth_failures.take(address)
        raise AuthenticationRequiredError(problem or "the API key is not valid")
    wait_s = state.limiter.take(principal.key_id)
    if wait_s > 0:
        raise RateLimitedError(
            f"rate limit of {state.limiter.rate_per_minute} requests a minute reached",
            retry_after_s=wait_s,
        )
    request.state.principal = principal
    return principal


Caller = Annotated[Principal, Depends(caller)]


async def admin(principal: Caller) -> Principal:
    """Return the caller if it holds the admin role.

    Raises ForbiddenError (403) for a reader key.
    """
    if not principal.is_admin:
        raise ForbiddenError(f"the key {principal.name!r} has the reader role; this needs admin")
    return principal


Admin = Annotated[Principal, Depends(admin)]


async def audit(
    state: AppState, principal: Principal, action: str, details: dict[str, object]
) -> None:
    """Record an administrative action in the audit log."""
    await state.db.run(
        lambda c: _audit.record(
            c, actor=principal.name, key_id=principal.key_id, action=action, details=details
        )
    )


@dataclass(frozen=True)
class RangeQuery:
    """The date range of a request, in the store's time zone."""

    range: DateRange
    tz: str
    today: date


def _parse_date(name: str, value: str | None) -> date | None:
    if value is None:
        return None
    if not DATE_PATTERN.match(value):
        raise InvalidQueryError(name, f"{value!r} is not a date in the form YYYY-MM-DD")
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidQueryError(name, f"{value!r} is not a valid date: {exc}") from None
    if not EARLIEST_DATE <= day <= LATEST_DATE:
        raise InvalidQueryError(
            name, f"{value} is outside the supported dates {EARLIEST_DATE} to {LATEST_DATE}"
        )
    return day


async def date_range(
    state: State,
    preset: Annotated[
        str | None,
        Query(
            alias="range",
            description=f"a preset: {', '.join(PRESETS)} (default last-30-days)",
            max_length=40,
        ),
    ] = None,
    start: Annotated[
        str | None,
        Query(description="first day, YYYY-MM-DD, in the store's time zone (with end)"),
    ] = None,
    end: Annotated[
        str | None, Query(description="last day (inclusive), YYYY-MM-DD (with start)")
    ] = None,
) -> RangeQuery:
    """Resolve `range`, or `start` and `end`, in the store's time zone.

    Raises InvalidQueryError (422) naming the parameter at fault and why.
    """
    first, last = _parse_date("start", start), _parse_date("end", end)
    tz = await state.timezone()
    today = local_today(tz, state.clock())
    try:
        rng = resolve_range(preset=preset, start=first, end=last, today=today)
    except InvalidRangeError as exc:
        if preset is not None:
            parameter = "range"
        elif first is None:
            parameter = "start"
        elif last is None:
            parameter = "end"
        else:
            parameter = "start"
        raise InvalidQueryError(parameter, str(exc)) from None
    return RangeQuery(rng, tz, today)


Range = Annotated[RangeQuery, Depends(date_range)]


JSON = "application/json"


async def answer(
    request: Request,
    state: AppState,
    principal: Principal,
    *,
    group: str,
    ttl_s: float,
    produce: Callable[[], Awaitable[Sourced]],
) -> Response:
    """Answer from the cache, or produce, render and (if from the database) cache the body.

    Answers from the Klaviyo fallback are not cached: the next request should find the synced
    data. Errors raised by `produce` propagate and are never cached.
    """
    key = cache_key(group, request.url.path, request.query_params.multi_items(), principal.role)
    cached = await state.cache.get(key)
    if cached is not None:
        return Response(
            cached, media_type=JSON, headers={"X-Data-Source": "database", "X-Cache": "hit"}
        )
    generation = state.generation
    body = await produce()
    rendered = body.model_dump_json().encode()
    if body.source == "database" and generation == state.generation:
        await state.cache.set(key, rendered, ttl_s)
    return Response(
        rendered, media_type=JSON, headers={"X-Data-Source": body.source, "X-Cache": "miss"}
    )


TTL_FACTORS = {"account": 0.2, "metrics": 4.0, "forecast": 6.0}


def ttl_for(state: AppState, group: str) -> float:
    """Return how long answers of `group` are cached: CACHE_TTL_S times the group's factor."""
    return state.settings.cache_ttl_s * TTL_FACTORS.get(group, 1.0)


# Identifiers (metric, flow ids) are short ASCII tokens; anything else is refused up front.
ID_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"
