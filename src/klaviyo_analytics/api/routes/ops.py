"""Operations: liveness, readiness, Prometheus metrics. No API key needed."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials

from klaviyo_analytics.api.deps import AppState, State, api_key_header, bearer_header, caller
from klaviyo_analytics.api.models import CheckModel, Health, ReadinessModel
from klaviyo_analytics.monitoring.health import Readiness, ReadinessLimits, readiness
from klaviyo_analytics.monitoring.metrics import CONTENT_TYPE

router = APIRouter(tags=["operations"])

# How long one readiness report answers every probe.
READINESS_EVERY_S = 5.0


async def _credentials(request: Request) -> tuple[HTTPAuthorizationCredentials | None, str | None]:
    return await bearer_header(request), await api_key_header(request)


@router.get("/health", response_model=Health, summary="Liveness (no database)")
async def health() -> Health:
    """Answer as long as the process serves requests."""
    return Health(status="ok")


@router.get(
    "/health/ready",
    response_model=ReadinessModel,
    summary="Readiness: database, disk, replication, sync and backup age",
    responses={503: {"model": ReadinessModel, "description": "A required check failed"}},
)
async def ready(state: State) -> JSONResponse:
    """Run every readiness check; 503 when a required one (database, disk) failed.

    The report is reused for READINESS_EVERY_S, so a flood of probes costs one check.
    """
    now = time.monotonic()
    if state.readiness is None or state.readiness[0] <= now:
        async with state.readiness_lock:
            if state.readiness is None or state.readiness[0] <= now:
                state.readiness = (time.monotonic() + READINESS_EVERY_S, await _check(state))
    report = state.readiness[1]
    body = ReadinessModel(
        ready=report.ready, checks=[CheckModel.model_validate(c) for c in report.checks]
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if report.ready else 503)


async def _check(state: AppState) -> Readiness:
    state.readiness_checks += 1
    s = state.settings
    return await readiness(
        state.db,
        data_dir=s.embedded_data_dir if s.uses_embedded_database else s.home_dir,
        backup_dir=s.backup_path,
        now=state.clock(),
        limits=ReadinessLimits(
            min_free_disk_mb=s.min_free_disk_mb,
            max_replica_lag_s=s.max_replica_lag_s,
            stale_sync_s=s.stale_after_minutes * 60,
            stale_backup_s=s.backup_stale_after_hours * 3600,
        ),
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request, state: State) -> Response:
    """Return the app's metrics in the Prometheus text format (an API key when
    METRICS_REQUIRE_KEY is set); database figures are re-read at most every few seconds."""
    if state.settings.metrics_require_key:
        await caller(request, state, *await _credentials(request))
    text = await state.metrics.render(
        state.db,
        backup_dir=state.settings.backup_path,
        active_syncs=len(state.syncs.service.active) if state.syncs else 0,
        cache_hits=state.cache.stats.hits,
        cache_misses=state.cache.stats.misses,
    )
    return Response(text, media_type=CONTENT_TYPE)
