"""The sandbox's HTTP errors, rendered as Klaviyo's JSON:API error documents."""

from __future__ import annotations

import hashlib
from typing import Any

from klaviyo_analytics.errors import FatalError


class ApiError(FatalError):
    """A request the sandbox refuses, with the status and Klaviyo's error fields."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        parameter: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Describe the refusal; `parameter` names the query parameter at fault."""
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.parameter = parameter
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """Return the error document (`{"errors": [...]}`); the id is stable per error."""
        error_id = hashlib.blake2b(
            f"{self.status}:{self.code}:{self.detail}".encode(), digest_size=16
        ).hexdigest()
        error: dict[str, Any] = {
            "id": f"{error_id[:8]}-{error_id[8:12]}-{error_id[12:16]}-{error_id[16:20]}-"
            f"{error_id[20:]}",
            "status": self.status,
            "code": self.code,
            "title": self.title,
            "detail": self.detail,
            "source": {"parameter": self.parameter} if self.parameter else {},
        }
        return {"errors": [error]}


def invalid(detail: str, parameter: str | None = None) -> ApiError:
    """Return a 400 `invalid` error about a parameter."""
    return ApiError(400, "invalid", "Invalid input.", detail, parameter)
