"""Serve the dashboard page, its static files and the charting bundle of the installed plotly.

Nothing here touches the database or needs a key: the page itself asks for a key when the API
answers 401. Static files are read from the package (`web/static/`); plotly.min.js from the
installed `plotly` wheel, never from a CDN or a copy in the repository.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from functools import lru_cache
from importlib import metadata, resources
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException
from fastapi.responses import FileResponse, Response

router = APIRouter(include_in_schema=False)

STATIC = resources.files("klaviyo_analytics.web") / "static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
# Our own files change with each release: the browser revalidates them (cheap 304s by ETag).
REVALIDATE = "no-cache"
# The charting bundle changes only when plotly is upgraded: a day's caching, then revalidate.
BUNDLE_CACHE = "public, max-age=86400"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Everything the page loads comes from this server: scripts, styles, fonts, API calls.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
}
FILE_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}\.(html|js|css|svg|png|ico)")


@lru_cache(maxsize=64)
def _static(name: str) -> tuple[bytes, str] | None:
    """Return a static file's bytes and ETag, or None when the package has no such file."""
    item = STATIC / name
    if not item.is_file():
        return None
    body = item.read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _serve(name: str, if_none_match: str | None) -> Response:
    found = _static(name)
    if found is None:
        raise HTTPException(404, f"no static file {name!r}")
    body, etag = found
    headers = {"ETag": etag, "Cache-Control": REVALIDATE, **SECURITY_HEADERS}
    if if_none_match is not None and etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    media = CONTENT_TYPES[Path(name).suffix]
    return Response(body, media_type=media, headers=headers)


@lru_cache(maxsize=1)
def plotly_bundle() -> tuple[Path, str] | None:
    """Return the path of the installed plotly's plotly.min.js and plotly's version, or None."""
    # Located, not imported: importing plotly's Python side would be slow and is not needed.
    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "package_data" / "plotly.min.js"
    return (path, metadata.version("plotly")) if path.is_file() else None


@router.api_route("/", methods=["GET", "HEAD"])
async def index(if_none_match: Annotated[str | None, Header()] = None) -> Response:
    """Return the dashboard page."""
    return _serve("index.html", if_none_match)


@router.api_route("/customers", methods=["GET", "HEAD"])
async def customers_page(if_none_match: Annotated[str | None, Header()] = None) -> Response:
    """Return the Customers page (cohorts, RFM, CLV, products, funnel)."""
    return _serve("customers.html", if_none_match)


@router.api_route("/static/{name}", methods=["GET", "HEAD"])
async def static_file(
    name: str,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Return one of the page's files; 404 for any other name (the page has no other files,
    so a name outside FILE_NAME is as absent as a missing one)."""
    if FILE_NAME.fullmatch(name) is None:
        raise HTTPException(404, "no such static file")
    return _serve(name, if_none_match)


@router.api_route("/vendor/plotly.min.js", methods=["GET", "HEAD"])
async def plotly_js() -> Response:
    """Return plotly.min.js from the installed plotly package; 404 when plotly is missing."""
    found = plotly_bundle()
    if found is None:
        raise HTTPException(404, "plotly is not installed: pip install plotly")
    path, version = found
    return FileResponse(
        path,
        media_type=CONTENT_TYPES[".js"],
        headers={"Cache-Control": BUNDLE_CACHE, "X-Plotly-Version": version, **SECURITY_HEADERS},
    )
