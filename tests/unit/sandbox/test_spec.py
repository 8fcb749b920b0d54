"""The repository's copy of Klaviyo's OpenAPI description covers everything the sandbox serves."""

from __future__ import annotations

from fastapi.routing import APIRoute

from klaviyo_analytics.sandbox.app import create_sandbox_app
from klaviyo_analytics.sandbox.config import REVISION
from klaviyo_analytics.sandbox.spec import klaviyo_spec


def test_every_sandbox_endpoint_is_described_by_the_kept_spec() -> None:
    paths = klaviyo_spec()["paths"]
    served = [(method.lower(), route.path) for route in create_sandbox_app().routes
              if isinstance(route, APIRoute) and route.path.startswith("/api/")
              for method in route.methods]  # fmt: skip
    assert served
    missing = [(m, p) for m, p in served if m not in paths.get(p.rstrip("/"), {})]
    assert missing == []


def test_the_kept_spec_is_the_revision_the_sandbox_enforces() -> None:
    assert klaviyo_spec()["info"]["version"] == REVISION
