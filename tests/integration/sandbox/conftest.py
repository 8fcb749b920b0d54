"""Helpers for the sandbox's HTTP tests: an authenticated client and the spec's validators."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS30Validator

from klaviyo_analytics.sandbox.server import SandboxServer
from klaviyo_analytics.sandbox.spec import klaviyo_spec

REVISION = "2026-07-15"


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
    """Klaviyo's OpenAPI spec as the repository keeps it, with oneOf read as anyOf."""
    spec: dict[str, Any] = _any_of(klaviyo_spec())
    return spec


SchemaCheck = Callable[[str, str, int, Any], None]


def _sparse(node: Any) -> Any:
    # Under a sparse fieldset Klaviyo returns only the asked attributes (dotted names select
    # nested keys), so keys the schemas require inside attributes may be absent. Documents and
    # resource objects keep their requirements (data; type, id, ...), and every other check
    # (types, enums, formats, shapes) stays.
    if isinstance(node, dict):
        out = {k: _sparse(v) for k, v in node.items()}
        required = out.get("required")
        if isinstance(required, list) and not {"type", "data", "errors"} & set(required):
            out.pop("required")
        return out
    if isinstance(node, list):
        return [_sparse(v) for v in node]
    return node


@pytest.fixture(scope="session")
def check_response(openapi_spec: dict[str, Any]) -> SchemaCheck:
    """Validate a body against the spec's response schema for (method, path, status)."""
    return _checker(openapi_spec)


@pytest.fixture(scope="session")
def check_sparse_response(openapi_spec: dict[str, Any]) -> SchemaCheck:
    """Validate a body asked with sparse fieldsets: as `check_response`, attributes optional."""
    return _checker(_sparse(openapi_spec))


def _checker(openapi_spec: dict[str, Any]) -> SchemaCheck:
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
