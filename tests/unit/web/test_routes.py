"""The dashboard's static route: content types, caching, 404s, and plotly from its wheel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib import metadata
from pathlib import Path

import httpx
import pytest_asyncio
from fastapi import FastAPI

from klaviyo_analytics.web.routes import plotly_bundle, router

STATIC = Path(__file__).resolve().parents[3] / "src/klaviyo_analytics/web/static"


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(router)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://dash.test"
    ) as client:
        yield client


async def test_the_page_and_its_files_are_served_with_their_types_and_revalidated(
    http: httpx.AsyncClient,
) -> None:
    page = await http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.text == (STATIC / "index.html").read_text(encoding="utf-8")
    assert page.headers["cache-control"] == "no-cache"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        response = await http.get(f"/static/{name}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(kind)
        again = await http.get(
            f"/static/{name}", headers={"If-None-Match": response.headers["etag"]}
        )
        assert again.status_code == 304 and again.content == b""


async def test_every_module_the_page_imports_exists(http: httpx.AsyncClient) -> None:
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    customers = (STATIC / "customers.html").read_text(encoding="utf-8")
    for js in STATIC.glob("*.js"):
        if js.name == "customers.js":  # the Customers page's own module
            assert f'src="/static/{js.name}"' in customers
        else:
            assert f'href="/static/{js.name}"' in html, f"{js.name} is not preloaded"
        assert (await http.get(f"/static/{js.name}")).status_code == 200
    for name in ("/", "/customers"):
        assert (await http.get(name)).status_code == 200, name


async def test_unknown_or_unsafe_names_are_404s(http: httpx.AsyncClient) -> None:
    for path in ("/static/nope.js", "/static/..%2Froutes.py", "/static/routes.py", "/static/.env"):
        response = await http.get(path)
        assert response.status_code == 404, path


async def test_plotly_is_served_from_the_installed_wheel(http: httpx.AsyncClient) -> None:
    found = plotly_bundle()
    assert found is not None
    path, version = found
    assert version == metadata.version("plotly")
    response = await http.get("/vendor/plotly.min.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.headers["x-plotly-version"] == version
    assert response.headers["cache-control"] == "public, max-age=86400"
    assert response.content == path.read_bytes()


def test_no_charting_bundle_is_committed_to_the_package() -> None:
    assert not list(STATIC.parent.glob("**/plotly*.js"))
