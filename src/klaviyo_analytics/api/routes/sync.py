"""Sync endpoints: start syncs in the background, watch them, read the run history."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from klaviyo_analytics.api.deps import Admin, Caller, KnownQuery, State, audit
from klaviyo_analytics.api.errors import ResourceNotFoundError
from klaviyo_analytics.api.models import (
    ERROR_RESPONSES,
    LiveProgress,
    StartedRun,
    StreamStatus,
    SyncRunModel,
    SyncRunsPage,
    SyncStarted,
    SyncStatusResponse,
)
from klaviyo_analytics.db.repos.operations import runs_page
from klaviyo_analytics.db.repos.sync_state import SyncRunRepository
from klaviyo_analytics.errors import ConfigurationError
from klaviyo_analytics.sync.registry import STREAMS

router = APIRouter(
    prefix="/api/sync", tags=["sync"], responses=ERROR_RESPONSES, dependencies=[KnownQuery]
)
_runs = SyncRunRepository()

# The registry's stream names, as the patterns a path or query parameter must match.
STREAM = "^(" + "|".join(STREAMS) + ")$"
STREAM_OR_ALL = "^(all|" + "|".join(STREAMS) + ")$"


@router.post(
    "/{stream}",
    status_code=202,
    response_model=SyncStarted,
    summary="Start a sync of one stream, or of all",
    responses={409: {"description": "That stream is already syncing"}},
)
async def start_sync(
    state: State,
    principal: Admin,
    stream: Annotated[str, Path(description="a stream, or all", pattern=STREAM_OR_ALL)],
) -> SyncStarted:
    """Start a sync in the background and answer as soon as its run rows exist (admin).

    409 when the stream (or all) is already syncing; 503 without KLAVIYO_API_KEY.
    """
    if state.syncs is None:
        raise ConfigurationError("KLAVIYO_API_KEY is not set: this server cannot sync")
    started = await state.syncs.start(stream)
    await audit(
        state,
        principal,
        "sync.start",
        {"stream": stream, "runs": [{"stream": s.stream, "run_id": s.run_id} for s in started]},
    )
    return SyncStarted(
        stream=stream,
        runs=[StartedRun(stream=s.stream, run_id=s.run_id) for s in started],
        status_url="/api/sync/status",
    )


@router.get(
    "/status", response_model=SyncStatusResponse, summary="Last run and live progress per stream"
)
async def sync_status(state: State, _: Caller) -> SyncStatusResponse:
    """Return each stream's last run and, while it runs, its live counters."""
    last = {r.stream: r for r in await state.db.run(_runs.last_per_stream, readonly=True)}
    active = dict(state.syncs.service.active) if state.syncs else {}
    now = time.monotonic()
    streams = []
    for name in STREAMS:
        counters = active.get(name)
        live = None
        if counters is not None:
            live = LiveProgress(
                run_id=counters.run_id,
                records=counters.fetched,
                rows=dict(counters.rows),
                pages=counters.pages,
                fraction=counters.fraction,
                rate_per_s=round(counters.rate_per_s, 2),
                elapsed_s=round(now - counters.started, 3),
            )
        run = last.get(name)
        streams.append(
            StreamStatus(
                stream=name,
                last_run=SyncRunModel.model_validate(run) if run else None,
                running=live,
            )
        )
    running = bool(active) or bool(state.syncs and state.syncs.running())
    return SyncStatusResponse(running=running, streams=streams)


@router.get("/runs", response_model=SyncRunsPage, summary="Sync run history, newest first")
async def sync_runs(
    state: State,
    _: Caller,
    stream: Annotated[str | None, Query(description="only this stream", pattern=STREAM)] = None,
    status: Annotated[
        Literal["running", "succeeded", "failed", "cancelled"] | None, Query()
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> SyncRunsPage:
    """Return one page of the run history."""
    runs, total = await state.db.run(
        lambda c: runs_page(c, stream=stream, status=status, limit=limit, offset=offset),
        readonly=True,
    )
    return SyncRunsPage(
        runs=[SyncRunModel.model_validate(r) for r in runs], total=total, limit=limit, offset=offset
    )


@router.get(
    "/runs/{run_id}",
    response_model=SyncRunModel,
    summary="One sync run",
    responses={404: {"description": "No such run"}},
)
async def sync_run(
    state: State, _: Caller, run_id: Annotated[int, Path(ge=1, le=2**63 - 1)]
) -> SyncRunModel:
    """Return one run; 404 when there is none with this id."""
    run = await state.db.run(lambda c: _runs.get(c, run_id), readonly=True)
    if run is None:
        raise ResourceNotFoundError(f"no sync run {run_id}")
    return SyncRunModel.model_validate(run)
