"""The Klaviyo-compatible sandbox as a FastAPI app: `create_sandbox_app(config)`.

`/api/...` answers like Klaviyo (auth, revision, page sizes, rate limits, filters, JSON:API);
`/admin/...` exposes the store's truth and the knobs tests turn (clock, faults, rate limits).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, fields
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from klaviyo_analytics.errors import ConfigurationError
from klaviyo_analytics.sandbox.apierror import ApiError, invalid
from klaviyo_analytics.sandbox.config import FaultOptions, SandboxConfig
from klaviyo_analytics.sandbox.events_api import list_events
from klaviyo_analytics.sandbox.faults import FaultMiddleware
from klaviyo_analytics.sandbox.filters import parse_datetime
from klaviyo_analytics.sandbox.generator import StoreGenerator
from klaviyo_analytics.sandbox.related import relationship_routes
from klaviyo_analytics.sandbox.render import iso
from klaviyo_analytics.sandbox.resources import route_table
from klaviyo_analytics.sandbox.state import JSONAPI, SandboxState, base_url, respond

logger = logging.getLogger(__name__)


def _error_response(error: ApiError) -> Response:
    return Response(orjson.dumps(error.body()), status_code=error.status, media_type=JSONAPI,
                    headers=error.headers)  # fmt: skip


async def _json_body(request: Request) -> Any:
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise invalid("The request body is not valid JSON.", "body") from None


def create_sandbox_app(
    config: SandboxConfig | None = None, generator: StoreGenerator | None = None
) -> FastAPI:
    """Build the sandbox app; `generator` may be shared with the caller to ask for the truth."""
    config = config or SandboxConfig()
    state = SandboxState(config, generator)
    app = FastAPI(title="Klaviyo sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sandbox = state

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return _error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = "not_found" if exc.status_code == 404 else "method_not_allowed"
        return _error_response(ApiError(exc.status_code, code, str(exc.detail), str(exc.detail)))

    app.router.redirect_slashes = False
    for path, handler in {**relationship_routes(state), **route_table(state)}.items():
        app.add_api_route(path, handler, methods=["GET"], include_in_schema=False)

    async def events(request: Request) -> Response:
        return await list_events(state, request)

    app.add_api_route("/api/events", events, methods=["GET"], include_in_schema=False)

    reports = state.reports

    def report(operation: str, build: Any) -> Any:
        async def handler(request: Request) -> Response:
            headers = state.guard(request, operation)
            body = await _json_body(request)
            doc = build(body, state.clock.now_ts())
            doc["links"] = {"self": str(request.url)}
            return respond(doc, headers)

        return handler

    routes = {
        "/api/campaign-values-reports": ("query_campaign_values", reports.campaign_values),
        "/api/flow-values-reports": ("query_flow_values", reports.flow_values),
        "/api/flow-series-reports": (
            "query_flow_series", lambda b, n: reports.flow_values(b, n, series=True)),
        "/api/form-values-reports": ("query_form_values", reports.form_values),
        "/api/segment-values-reports": ("query_segment_values", reports.segment_values),
    }  # fmt: skip
    for path, (operation, build) in routes.items():
        app.add_api_route(path, report(operation, build), methods=["POST"],
                          include_in_schema=False)  # fmt: skip

    async def metric_aggregates(request: Request) -> Response:
        headers = state.guard(request, "query_metric_aggregates")
        body = await _json_body(request)
        doc = reports.metric_aggregate(body, state.clock.now_ts(), base_url(request))
        doc["links"] = {"self": str(request.url)}
        return respond(doc, headers)

    app.add_api_route("/api/metric-aggregates", metric_aggregates, methods=["POST"],
                      include_in_schema=False)  # fmt: skip
    _add_admin(app, state)
    app.add_middleware(FaultMiddleware, injector=state.faults)
    app.add_middleware(TrailingSlashMiddleware)
    return app


class TrailingSlashMiddleware:
    """Answer `/api/metrics/` as `/api/metrics` (Klaviyo's SDK paths and links end in `/`)."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap `app`."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Strip one trailing slash from an `/api/` path, then pass the request on."""
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith("/api/") and path.endswith("/") and len(path) > 5:
            scope = {**scope, "path": path.rstrip("/"),
                     "raw_path": path.rstrip("/").encode()}  # fmt: skip
        await self.app(scope, receive, send)


def stats(state: SandboxState) -> dict[str, Any]:
    """Return the store's truth as /admin/stats reports it."""
    gen = state.generator
    cat = state.catalog
    now = state.clock.now_ts()
    by_metric = {m.id: gen.count_events(until=now + 1, metric_id=m.id) for m in cat.metrics}
    return {
        "seed": cat.options.seed,
        "start": iso(gen.start_ts),
        "end": iso(gen.end_ts),
        "now": iso(now),
        "now_ts": now,
        "live": state.clock.live,
        "events": sum(by_metric.values()),
        "events_by_metric": by_metric,
        "events_by_metric_name": {m.name: by_metric[m.id] for m in cat.metrics},
        "metrics": len(cat.metrics),
        "profiles": cat.options.profiles,
        "lists": len(cat.lists),
        "segments": len(cat.segments),
        "forms": len(cat.forms),
        "templates": len(cat.templates),
        "campaigns": {ch: sum(1 for c in cat.campaigns if c.channel == ch)
                      for ch in ("email", "sms")},
        "campaign_messages": len(cat.campaigns),
        "flows": len(cat.flows),
        "flow_actions": sum(len(f.actions) for f in cat.flows),
        "flow_messages": len(cat.flow_messages),
        "faults_injected": dict(state.faults.counts),
    }  # fmt: skip


def _add_admin(app: FastAPI, state: SandboxState) -> None:
    @app.get("/admin/stats", include_in_schema=False)
    async def admin_stats() -> JSONResponse:
        return JSONResponse(stats(state))

    @app.post("/admin/clock", include_in_schema=False)
    async def admin_clock(request: Request) -> JSONResponse:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise invalid("expected {'advance_seconds': N} or {'now': ISO datetime}", "body")
        if "now" in body:
            target = parse_datetime(str(body["now"]), "now")
            state.clock.advance(target - state.clock.now_ts())
        else:
            state.clock.advance(int(body.get("advance_seconds", 0)))
        now = state.clock.now_ts()
        return JSONResponse({"now": iso(now), "now_ts": now})

    @app.get("/admin/faults", include_in_schema=False)
    async def admin_faults() -> JSONResponse:
        return JSONResponse({**asdict(state.faults.options), "injected": state.faults.counts})

    @app.post("/admin/faults", include_in_schema=False)
    async def admin_set_faults(request: Request) -> JSONResponse:
        body = await _json_body(request)
        known = {f.name for f in fields(FaultOptions)}
        if not isinstance(body, dict) or not set(body) <= known | {"reset"}:
            raise invalid(f"fault knobs are {sorted(known)} (and 'reset')", "body")
        if body.pop("reset", False):
            state.faults.reset()
        try:
            options = state.faults.configure(**body)
        except (ConfigurationError, TypeError) as exc:
            raise invalid(str(exc), "body") from exc
        return JSONResponse(asdict(options))

    @app.post("/admin/rate-limits", include_in_schema=False)
    async def admin_rate_limits(request: Request) -> JSONResponse:
        body = await _json_body(request)
        enabled = bool(body.get("enabled", True)) if isinstance(body, dict) else True
        scale = float(body.get("scale", 1.0)) if isinstance(body, dict) else 1.0
        if scale <= 0:
            raise invalid("scale must be positive", "scale")
        state.limiter.configure(enabled, scale)
        return JSONResponse({"enabled": enabled, "scale": scale})
