"""The account and its metrics, from the database or (before the first sync) from Klaviyo."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from klaviyo_analytics.api.deps import Caller, KnownQuery, State, answer, ttl_for
from klaviyo_analytics.api.fallback import klaviyo_metrics, may_ask_klaviyo, sync_once
from klaviyo_analytics.api.models import (
    ERROR_RESPONSES,
    AccountResponse,
    MetricModel,
    MetricsResponse,
)
from klaviyo_analytics.db.repos.operations import last_success, metric_names
from klaviyo_analytics.db.repos.sync_state import SyncStateRepository

router = APIRouter(
    prefix="/api", tags=["account"], responses=ERROR_RESPONSES, dependencies=[KnownQuery]
)
_state = SyncStateRepository()


@router.get("/metrics", response_model=MetricsResponse, summary="The account's metrics")
async def metrics(request: Request, state: State, principal: Caller) -> Response:
    """List every metric (id, name, integration); from Klaviyo only before the first metrics sync."""

    async def produce() -> MetricsResponse:
        rows = await state.db.run(metric_names, readonly=True)
        if rows or state.klaviyo is None or not await may_ask_klaviyo(state, "metrics"):
            return MetricsResponse(
                source="database", metrics=[MetricModel.model_validate(r) for r in rows]
            )
        remote = await klaviyo_metrics(state.klaviyo)
        sync_once(state, "metrics")
        return MetricsResponse(
            source="klaviyo",
            metrics=[
                MetricModel(
                    id=m.id,
                    name=m.name or "",
                    integration=str((m.integration or {}).get("name") or "") or None,
                )
                for m in sorted(remote, key=lambda m: (m.name or "", m.id))
            ],
        )

    return await answer(
        request, state, principal, group="metrics", ttl_s=ttl_for(state, "metrics"), produce=produce
    )


@router.get("/account", response_model=AccountResponse, summary="Account, time zone and freshness")
async def account(request: Request, state: State, principal: Caller) -> Response:
    """Return the account's name, time zone, currency, last sync time and whether it is fresh."""

    async def produce() -> AccountResponse:
        saved = await state.db.run(lambda c: _state.get(c, "account", ""), readonly=True)
        synced_at = await state.db.run(last_success, readonly=True)
        tz = await state.timezone()
        stale_s = state.settings.stale_after_minutes * 60
        fresh = synced_at is not None and (state.clock() - synced_at).total_seconds() <= stale_s
        common = {
            "last_sync_at": synced_at,
            "fresh": fresh,
            "stale_after_minutes": state.settings.stale_after_minutes,
        }
        if saved is None and state.klaviyo is not None and await may_ask_klaviyo(state, "account"):
            remote = await state.klaviyo.get_account()
            sync_once(state, "account")
            return AccountResponse(
                source="klaviyo",
                name=remote.organization_name,
                timezone=state.settings.account_timezone or remote.timezone,
                currency=remote.preferred_currency,
                **common,  # type: ignore[arg-type]
            )
        info = saved.state if saved is not None else {}
        return AccountResponse(
            source="database",
            name=info.get("name"),
            timezone=tz,
            currency=info.get("currency"),
            **common,  # type: ignore[arg-type]
        )

    return await answer(
        request, state, principal, group="account", ttl_s=ttl_for(state, "account"), produce=produce
    )
