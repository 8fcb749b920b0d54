"""The errors the Klaviyo client raises; httpx's own exceptions never leave this package.

Whether a failure is worth retrying is a property of the class: every class here derives from
either `RetryableError` or `FatalError`. Messages name the request (method and path) and carry
Klaviyo's JSON:API error detail, never request headers (so never the API key).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from klaviyo_analytics.errors import (
    FatalError,
    KlaviyoAnalyticsError,
    NotFoundError,
    RetryableError,
)


@dataclass(frozen=True)
class ErrorDetail:
    """One entry of a JSON:API `errors[]` array as Klaviyo sends it."""

    id: str | None = None
    status: int | None = None
    code: str | None = None
    title: str | None = None
    detail: str | None = None
    source_pointer: str | None = None
    source_parameter: str | None = None

    def describe(self) -> str:
        """Return a one-line human description of this error entry."""
        parts = [p for p in (self.code, self.title, self.detail) if p]
        text = ": ".join(parts) if parts else "no detail"
        where = self.source_parameter or self.source_pointer
        return f"{text} (at {where})" if where else text


def parse_error_details(body: object) -> tuple[ErrorDetail, ...]:
    """Read the `errors[]` array of a JSON:API error body; tolerate anything else."""
    if not isinstance(body, Mapping):
        return ()
    errors = body.get("errors")
    if not isinstance(errors, Sequence) or isinstance(errors, str):
        return ()
    details = []
    for item in errors:
        if not isinstance(item, Mapping):
            continue
        source = item.get("source")
        source = source if isinstance(source, Mapping) else {}
        details.append(
            ErrorDetail(
                id=_opt_str(item.get("id")),
                status=_opt_int(item.get("status")),
                code=_opt_str(item.get("code")),
                title=_opt_str(item.get("title")),
                detail=_opt_str(item.get("detail")),
                source_pointer=_opt_str(source.get("pointer")),
                source_parameter=_opt_str(source.get("parameter")),
            )
        )
    return tuple(details)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


class KlaviyoError(KlaviyoAnalyticsError):
    """A call to the Klaviyo API failed.

    `method` and `url` name the request (the URL holds no secret: the key travels in a header);
    `status` is the HTTP status when there was a response; `details` is Klaviyo's `errors[]`.
    `attempts` is how many tries were made before giving up.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str,
        url: str,
        status: int | None = None,
        details: Sequence[ErrorDetail] = (),
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.url = url
        self.status = status
        self.details = tuple(details)
        self.attempts = attempts

    def __str__(self) -> str:
        suffix = f" (after {self.attempts} attempts)" if self.attempts > 1 else ""
        return f"{self.message}{suffix}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(method={self.method!r}, url={self.url!r}, "
            f"status={self.status!r}, message={self.message!r})"
        )


class KlaviyoClientError(KlaviyoError, FatalError):
    """Klaviyo refused the request (a 4xx other than 429); retrying cannot help."""


class KlaviyoBadRequestError(KlaviyoClientError):
    """400: the request is invalid (bad filter, missing revision, wrong page size...)."""


class KlaviyoAuthenticationError(KlaviyoClientError):
    """401: the API key is missing or invalid."""


class KlaviyoPermissionError(KlaviyoClientError):
    """403: the API key lacks the scope this endpoint needs."""


class KlaviyoNotFoundError(KlaviyoClientError, NotFoundError):
    """404: the resource or endpoint does not exist."""


class KlaviyoRateLimitedError(KlaviyoError, RetryableError):
    """429 again and again: the operation's rate limit was not waited out in time.

    `retry_after_s` is the server's last `Retry-After`, if it sent one.
    """

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s


class KlaviyoServerError(KlaviyoError, RetryableError):
    """5xx (or 408): Klaviyo failed to answer this time."""


class KlaviyoTransportError(KlaviyoError, RetryableError):
    """The connection failed or was reset before a complete response arrived."""


class KlaviyoTimeoutError(KlaviyoTransportError):
    """The request timed out (connecting, writing, reading or waiting for a connection)."""


class KlaviyoMalformedResponseError(KlaviyoError, RetryableError):
    """A success status came with a body that is not a JSON:API document (non-JSON, truncated)."""


class KlaviyoInvalidPayloadError(KlaviyoError, FatalError):
    """A single resource the caller asked for (account, report) did not validate."""


class KlaviyoPagingError(KlaviyoError, FatalError):
    """Pagination went wrong: a `links.next` repeated, or pointed away from the API's origin."""


STATUS_ERRORS: Mapping[int, type[KlaviyoClientError]] = {
    400: KlaviyoBadRequestError,
    401: KlaviyoAuthenticationError,
    403: KlaviyoPermissionError,
    404: KlaviyoNotFoundError,
}
