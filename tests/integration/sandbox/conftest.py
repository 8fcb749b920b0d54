"""Helpers for the sandbox's HTTP tests: an authenticated client and the spec's validators."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS30Validator

from klaviyo_analytics.sandbox.server import SandboxServer

REVISION = "2026-07-15"


def spec_dir() -> Path:
    """Locate shared/klaviyo-openapi: $KLAVIYO_OPENAPI_DIR, or ../shared next to the repo."""
    env = os.environ.get("KLAVIYO_OPENAPI_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[4] / "shared" / "klaviyo-openapi"


def _any_of(node: Any) -> Any:
    # The spec uses oneOf over structurally identical alternatives (EmailSendOptions,
    # SMSSendOptions and PushSendOptions are the same object), which no document can satisfy
    # "exactly once"; anyOf keeps every alternative's checks without that impossibility.
    if isinstance(node, dict):
        return {("anyOf" if k == "oneOf" else k): _any_of(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_any_of(v) for v in node]
    return node


@pytest.fixture(scope="session")
def openapi_spec() -> dict[str, Any]:
    """Klaviyo's OpenAPI spec (stable.json), with oneOf read as anyOf."""
    path = spec_dir() / "stable.json"
    if not path.exists():
        pytest.fail(f"the Klaviyo spec is missing at {path}; set KLAVIYO_OPENAPI_DIR")
    spec: dict[str, Any] = _any_of(json.loads(path.read_text()))
    return spec


SchemaCheck = Callable[[str, str, int, Any], None]


@pytest.fixture(scope="session")
def check_response(openapi_spec: dict[str, Any]) -> SchemaCheck:
    """Validate a body against the spec's response schema for (method, path, status)."""
    components = openapi_spec["components"]

    def check(method: str, path: str, status: int, body: Any) -> None:
        responses = openapi_spec["paths"][path][method.lower()]["responses"]
        response = responses.get(str(status)) or responses[f"{str(status)[0]}XX"]
        if "$ref" in response:
            response = components["responses"][response["$ref"].split("/")[-1]]
        schema = response["content"]["application/vnd.api+json"]["schema"]
        OAS30Validator({**schema, "components": components}).validate(body)

    return check


@pytest.fixture
def api(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    """An authenticated client of the shared sandbox."""
    with client_for(sandbox) as client:
        yield client


def client_for(server: SandboxServer, **kwargs: Any) -> httpx.Client:
    """Return an httpx client sending the sandbox's key and the revision header."""
    headers = {"Authorization": f"Klaviyo-API-Key {server.api_key}", "revision": REVISION,
               "accept": "application/vnd.api+json"}  # fmt: skip
    return httpx.Client(base_url=server.base_url, headers=headers, **kwargs)
