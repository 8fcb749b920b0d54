"""The one JSON error shape of the API, and the handler that maps every error to it.

Every error answers `{"error": {"code", "message", "details"}}`: domain errors by class,
FastAPI's validation errors as 422 naming the parameter, unknown routes as 404, and anything
unexpected as a 500 with a generic message (the traceback goes to the log, not the client).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from klaviyo_analytics import klaviyo as k
from klaviyo_analytics.analytics.errors import (
    AnalysisUnavailableError,
    InvalidParameterError,
    ModelUnavailableError,
    SeriesTooShortError,
)
from klaviyo_analytics.db.pool import StatementTimeoutError
from klaviyo_analytics.errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    KlaviyoAnalyticsError,
    NotFoundError,
)

logger = logging.getLogger(__name__)


class ApiError(KlaviyoAnalyticsError):
    """An error the API answers with a given status, code and details."""

    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}


class AuthenticationRequiredError(ApiError):
    """No API key, or an unknown or revoked one."""

    status = 401
    code = "unauthenticated"


class ForbiddenError(ApiError):
    """The key's role may not do this."""

    status = 403
    code = "forbidden"


class RateLimitedError(ApiError):
    """The key spent its request budget; `Retry-After` says when to come back."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        wait = max(1, math.ceil(retry_after_s))
        super().__init__(
            message, details={"retry_after_s": wait}, headers={"Retry-After": str(wait)}
        )


class ConflictError(ApiError):
    """The request clashes with work in progress (a sync of the same stream)."""

    status = 409
    code = "conflict"


class ResourceNotFoundError(ApiError):
    """A path named something that does not exist."""

    status = 404
    code = "not_found"


class InvalidQueryError(ApiError):
    """A query parameter is invalid; `parameter` names it."""

    status = 422
    code = "invalid_parameter"

    def __init__(self, parameter: str, reason: str) -> None:
        super().__init__(
            f"invalid parameter {parameter!r}: {reason}",
            details=[{"parameter": parameter, "in": "query", "reason": reason}],
        )


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """Return the API's error document."""
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Return the API's error document as a response."""
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def classify(exc: Exception) -> tuple[int, str, dict[str, str]]:
    """Return the HTTP status, error code and extra headers for a domain error."""
    if isinstance(exc, ApiError):
        return exc.status, exc.code, exc.headers
    if isinstance(exc, NotFoundError):
        return 404, "not_found", {}
    if isinstance(exc, InvalidParameterError):
        return 422, "invalid_parameter", {}
    if isinstance(exc, SeriesTooShortError):
        return 422, "series_too_short", {}
    if isinstance(exc, ModelUnavailableError):
        return 422, "model_unavailable", {}
    if isinstance(exc, ConfigurationError):
        return 503, "not_configured", {}
    if isinstance(exc, AnalysisUnavailableError):
        return 503, "analysis_unavailable", {"Retry-After": "5"}
    if isinstance(exc, StatementTimeoutError):
        return 504, "query_timeout", {}
    if isinstance(exc, DatabaseUnavailableError):
        return 503, "database_unavailable", {"Retry-After": "5"}
    if isinstance(exc, k.KlaviyoRateLimitedError):
        return 503, "klaviyo_rate_limited", {"Retry-After": "30"}
    if isinstance(exc, k.KlaviyoAuthenticationError | k.KlaviyoPermissionError):
        return 502, "klaviyo_refused", {}
    if isinstance(exc, k.KlaviyoError):
        return 502, "klaviyo_unavailable", {}
    return 500, "internal_error", {}


def _validation_details(errors: Sequence[Any]) -> list[dict[str, Any]]:
    details = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        where = loc[0] if loc else "request"
        name = ".".join(loc[1:]) if len(loc) > 1 else where
        details.append({"parameter": name, "in": where, "reason": str(error.get("msg", ""))})
    return details


async def _on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = _validation_details(exc.errors())
    first = details[0] if details else {"parameter": "request", "reason": "invalid"}
    return error_response(
        422,
        "invalid_parameter",
        f"invalid parameter {first['parameter']!r}: {first['reason']}",
        details,
    )


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = f"no such path: {request.url.path}" if exc.status_code == 404 else str(exc.detail)
    return error_response(exc.status_code, code, message, None, dict(exc.headers or {}))


async def _on_domain(request: Request, exc: Exception) -> JSONResponse:
    status, code, headers = classify(exc)
    if status >= 500:
        logger.warning("%s %s answered %d: %s", request.method, request.url.path, status, exc)
    details = exc.details if isinstance(exc, ApiError) else None
    message = str(exc) if status != 500 else "internal error"
    if status == 500:
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(status, code, message, details, headers)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal error")


def install_error_handlers(app: FastAPI) -> None:
    """Map every error to the API's JSON shape."""
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    app.add_exception_handler(KlaviyoAnalyticsError, _on_domain)
    app.add_exception_handler(Exception, _on_unexpected)
