"""The API app built from the environment's settings, for `uvicorn security_app:app --factory`."""

from __future__ import annotations

from fastapi import FastAPI

from klaviyo_analytics.api.app import create_app
from klaviyo_analytics.config import load_settings


def app() -> FastAPI:
    """Return the app on DATABASE_URL with the settings of the environment."""
    return create_app(load_settings())
