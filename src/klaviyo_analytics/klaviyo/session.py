"""The HTTP core of the Klaviyo client: headers, rate limits, retries, error translation, stats.

Every request goes through `ApiSession.request`, which waits for the operation's rate limit,
sends, classifies the answer and retries transient failures under the `RetryPolicy`. httpx's
exceptions are translated here into `klaviyo.errors` and never propagate further.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from pydantic import SecretStr

from klaviyo_analytics.klaviyo.errors import (
    STATUS_ERRORS,
    KlaviyoClientError,
    KlaviyoError,
    KlaviyoMalformedResponseError,
    KlaviyoRateLimitedError,
    KlaviyoServerError,
    KlaviyoTimeoutError,
    KlaviyoTransportError,
    parse_error_details,
)
from klaviyo_analytics.klaviyo.ratelimit import RateLimiter
from klaviyo_analytics.retry import RetryPolicy

logger = logging.getLogger(__name__)

JSON_API = "application/vnd.api+json"


@dataclass(frozen=True)
class StatsSnapshot:
    """The counters at one moment (see `ClientStats`)."""

    api_calls: int = 0
    retries: int = 0
    rate_limited: int = 0
    errors: int = 0


@dataclass
class ClientStats:
    """Counters a sync run records; mutable on purpose, the client updates them in place.

    `api_calls` counts HTTP requests sent (every try); `retries` the tries that followed a
    transient failure; `rate_limited` the 429 answers; `errors` every other failed try (a 4xx,
    a 5xx, a timeout, a reset connection, a malformed body).
    """

    api_calls: int = 0
    retries: int = 0
    rate_limited: int = 0
    errors: int = 0

    def snapshot(self) -> StatsSnapshot:
        """Return the current counters as an immutable value."""
        return StatsSnapshot(self.api_calls, self.retries, self.rate_limited, self.errors)

    def reset(self) -> StatsSnapshot:
        """Zero the counters and return what they were."""
        before = self.snapshot()
        self.api_calls = self.retries = self.rate_limited = self.errors = 0
        return before


def parse_retry_after(value: str | None) -> float | None:
    """Return a `Retry-After` header as seconds (delta-seconds or HTTP-date), or None."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


class ApiSession:
    """One httpx client with Klaviyo's headers, a rate limiter and a retry policy."""

    def __init__(
        self,
        *,
        api_key: SecretStr,
        base_url: str,
        revision: str,
        retry: RetryPolicy,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None,
        limiter: RateLimiter | None,
        max_connections: int,
    ) -> None:
        self.retry = retry
        self.limiter = limiter
        self.stats = ClientStats()
        self._api_key = api_key
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"revision": revision, "accept": JSON_API},
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def request(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], str]:
        """Send one API call, retrying transient failures; return (document, final URL).

        Raises KlaviyoClientError subclasses at once for 4xx answers other than 429, and the
        last retryable KlaviyoError (rate limited, server error, transport error, malformed
        body) once the retry policy's attempts or deadline are used up.
        """
        policy = self.retry
        started = policy.clock()
        attempt = 0
        while True:
            attempt += 1
            if self.limiter is not None:
                await self.limiter.acquire(operation)
            try:
                return await self._attempt(operation, method, url, params, body)
            except KlaviyoError as exc:
                if not exc.retryable:
                    raise
                retry_after = (
                    exc.retry_after_s if isinstance(exc, KlaviyoRateLimitedError) else None
                )
                delay = policy.delay_s(attempt, retry_after)
                if not policy.allows(attempt, started, delay):
                    exc.attempts = attempt
                    raise
                self.stats.retries += 1
                logger.warning(
                    "Retrying %s %s in %.2f s after try %d of %d: %s",
                    method,
                    urlsplit(url).path,
                    delay,
                    attempt,
                    policy.attempts,
                    exc.message,
                )
                await policy.sleep(delay)

    async def _attempt(
        self,
        operation: str,
        method: str,
        url: str,
        params: dict[str, str] | None,
        body: dict[str, Any] | None,
    ) -> tuple[dict[str, Any], str]:
        headers = {"Authorization": f"Klaviyo-API-Key {self._api_key.get_secret_value()}"}
        content: bytes | None = None
        if body is not None:
            headers["content-type"] = JSON_API
            content = json.dumps(body).encode()
        request = self._http.build_request(
            method, url, params=params, headers=headers, content=content
        )
        full_url = str(request.url)
        path = request.url.path
        self.stats.api_calls += 1
        began = time.perf_counter()
        try:
            response = await self._http.send(request, stream=True)
            try:
                # The body goes into bytes of our own, not `response.content`: an httpx
                # response and its stream refer to each other, so what the response holds
                # lives until the cycle collector runs (~1 MB per page of events, dozens of
                # pages deep between the sync's full collections).
                raw = b"".join([chunk async for chunk in response.aiter_bytes()])
            finally:
                await response.aclose()
        except httpx.TimeoutException as exc:
            self.stats.errors += 1
            logger.debug("%s %s timed out (%s)", method, path, type(exc).__name__)
            raise KlaviyoTimeoutError(
                f"{method} {path} timed out ({type(exc).__name__})", method=method, url=full_url
            ) from exc
        except httpx.DecodingError as exc:
            self.stats.errors += 1
            raise KlaviyoMalformedResponseError(
                f"{method} {path} answered a body that could not be decoded",
                method=method,
                url=full_url,
            ) from exc
        except httpx.RequestError as exc:
            self.stats.errors += 1
            logger.debug("%s %s failed: %s", method, path, type(exc).__name__)
            raise KlaviyoTransportError(
                f"{method} {path} failed: {type(exc).__name__}: {exc}",
                method=method,
                url=full_url,
            ) from exc
        elapsed_ms = (time.perf_counter() - began) * 1000
        logger.debug("%s %s -> %d in %.1f ms", method, path, response.status_code, elapsed_ms)
        if response.is_success:
            return self._document(response, raw, method, path, full_url), full_url
        raise self._failure(operation, response, raw, method, path, full_url)

    def _document(
        self, response: httpx.Response, raw: bytes, method: str, path: str, url: str
    ) -> dict[str, Any]:
        try:
            document = orjson.loads(raw)
        except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
            self.stats.errors += 1
            raise KlaviyoMalformedResponseError(
                f"{method} {path} answered {response.status_code} with a body that is not JSON "
                f"({len(raw)} bytes)",
                method=method,
                url=url,
                status=response.status_code,
            ) from exc
        if not isinstance(document, dict):
            self.stats.errors += 1
            raise KlaviyoMalformedResponseError(
                f"{method} {path} answered {response.status_code} with JSON that is not an object",
                method=method,
                url=url,
                status=response.status_code,
            )
        return document

    def _failure(
        self,
        operation: str,
        response: httpx.Response,
        raw: bytes,
        method: str,
        path: str,
        url: str,
    ) -> KlaviyoError:
        status = response.status_code
        try:
            details = parse_error_details(orjson.loads(raw))
        except ValueError:
            details = ()
        described = details[0].describe() if details else response.reason_phrase
        more = f" (+{len(details) - 1} more)" if len(details) > 1 else ""
        message = f"{method} {path} answered {status}: {described}{more}"
        common: dict[str, Any] = {
            "method": method,
            "url": url,
            "status": status,
            "details": details,
        }
        if status == 429:
            self.stats.rate_limited += 1
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if retry_after is not None and self.limiter is not None:
                self.limiter.block(operation, retry_after)
            return KlaviyoRateLimitedError(message, retry_after_s=retry_after, **common)
        self.stats.errors += 1
        if status >= 500 or status == 408:
            return KlaviyoServerError(message, **common)
        error_class = STATUS_ERRORS.get(status, KlaviyoClientError)
        return error_class(message, **common)
