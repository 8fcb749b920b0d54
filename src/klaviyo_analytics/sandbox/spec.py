"""Klaviyo's OpenAPI description as the sandbox keeps it (`sandbox/openapi/`, package data)."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any


@functools.cache
def klaviyo_spec() -> dict[str, Any]:
    """Return the parts of Klaviyo's OpenAPI description the project uses (read once)."""
    text = resources.files(__package__).joinpath("openapi/klaviyo-openapi.json").read_text()
    spec: dict[str, Any] = json.loads(text)
    return spec
