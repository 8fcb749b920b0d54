"""The sandbox's running state and the checks every `/api/` request goes through."""

from __future__ import annotations

import base64
import re
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from klaviyo_analytics.sandbox.apierror import ApiError, invalid
from klaviyo_analytics.sandbox.config import SandboxConfig
from klaviyo_analytics.sandbox.faults import FaultInjector
from klaviyo_analytics.sandbox.generator import StoreGenerator
from klaviyo_analytics.sandbox.profile_facts import ProfileFacts
from klaviyo_analytics.sandbox.ratelimit import RateLimiter
from klaviyo_analytics.sandbox.render import Renderer
from klaviyo_analytics.sandbox.reports import Reports

JSONAPI = "application/vnd.api+json"
_REVISION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")


class SandboxClock:
    """The store's "now": the configured end, moved by `advance`, following wall time if live."""

    def __init__(self, end_ts: int, live: bool) -> None:
        """Start at `end_ts`."""
        self.end_ts = end_ts
        self.live = live
        self.offset_s = 0
        self._started = time.monotonic()

    def now_ts(self) -> int:
        """Return the current store time in unix seconds."""
        wall = int(time.monotonic() - self._started) if self.live else 0
        return self.end_ts + self.offset_s + wall

    def advance(self, seconds: int) -> int:
        """Move the clock forward (never back) and return the new time."""
        if seconds < 0:
            raise invalid("the clock only moves forward", "advance_seconds")
        self.offset_s += seconds
        return self.now_ts()


class SandboxState:
    """Everything one sandbox app holds: the store, its renderer and the enforcement knobs."""

    def __init__(self, config: SandboxConfig, generator: StoreGenerator | None = None) -> None:
        """Build the store (or reuse `generator`, which must match `config.store`)."""
        self.config = config
        self.generator = generator or StoreGenerator(config.store)
        self.catalog = self.generator.catalog
        self.renderer = Renderer(self.catalog, self.generator.customers.staple)
        self.reports = Reports(self.generator)
        self.profile_facts = ProfileFacts(self.generator)
        self.limiter = RateLimiter(config.rate_limits, config.rate_limit_scale)
        self.faults = FaultInjector(config.faults)
        self.clock = SandboxClock(self.generator.end_ts, config.live)
        self._auth = f"Klaviyo-API-Key {config.api_key}"

    def guard(self, request: Request, operation: str) -> dict[str, str]:
        """Check key, revision and rate limit; return headers; raise ApiError (401/400/429)."""
        auth = request.headers.get("authorization")
        if not auth:
            raise ApiError(
                401,
                "not_authenticated",
                "Authentication credentials were not provided.",
                "Missing or invalid authorization scheme. Please use Klaviyo-API-Key.",
            )
        if auth != self._auth:
            raise ApiError(401, "authentication_failed", "Incorrect authentication credentials.",
                           "Incorrect authentication credentials.")  # fmt: skip
        revision = request.headers.get("revision")
        if not revision:
            raise ApiError(400, "invalid", "Invalid input.",
                           "The revision header is required (e.g. revision: 2026-07-15).",
                           "revision")  # fmt: skip
        if not _REVISION.match(revision):
            raise invalid(f"'{revision}' is not a valid revision (YYYY-MM-DD).", "revision")
        return self.limiter.check(operation).headers()


def base_url(request: Request) -> str:
    """Return the request's own scheme://host:port, so links point back at this server."""
    return str(request.base_url).rstrip("/")


def respond(doc: dict[str, Any], headers: dict[str, str], status: int = 200) -> Response:
    """Serialise a JSON:API document."""
    return Response(orjson.dumps(doc), status_code=status, media_type=JSONAPI, headers=headers)


def page_size(request: Request, default: int, maximum: int) -> int:
    """Read `page[size]`; raise ApiError (400) when it is not an integer within 1..maximum."""
    raw = request.query_params.get("page[size]")
    if raw is None:
        return default
    try:
        size = int(raw)
    except ValueError:
        size = -1
    if not 1 <= size <= maximum:
        raise invalid(f"Page size must be an integer between 1 and {maximum}, got '{raw}'.",
                      "page[size]")  # fmt: skip
    return size


def encode_cursor(*parts: int) -> str:
    """Make an opaque cursor from integers."""
    text = ".".join(str(p) for p in parts)
    return base64.urlsafe_b64encode(f"c1.{text}".encode()).decode().rstrip("=")


def decode_cursor(request: Request, count: int) -> tuple[int, ...] | None:
    """Read `page[cursor]` back into `count` integers; raise ApiError (400) if it is not ours."""
    raw = request.query_params.get("page[cursor]")
    if raw is None:
        return None
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        tag, *parts = text.split(".")
        values = tuple(int(p) for p in parts)
    except (ValueError, UnicodeDecodeError):
        values, tag = (), ""
    if tag != "c1" or len(values) != count:
        raise invalid(f"'{raw}' is not a valid page cursor.", "page[cursor]")
    return values


def next_link(request: Request, cursor: str) -> str:
    """Return this request's absolute URL with `page[cursor]` set (filters, sort, size kept)."""
    return str(request.url.include_query_params(**{"page[cursor]": cursor}))
