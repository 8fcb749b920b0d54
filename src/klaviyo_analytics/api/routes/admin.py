"""Administration: clear the cache, create, list and revoke API keys (admin role)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from klaviyo_analytics.api.auth import create_key, revoke_key
from klaviyo_analytics.api.deps import Admin, KnownQuery, State, audit
from klaviyo_analytics.api.errors import ConflictError, ResourceNotFoundError
from klaviyo_analytics.api.models import (
    ERROR_RESPONSES,
    ApiKeyModel,
    ApiKeysResponse,
    CacheCleared,
    NewApiKey,
    NewApiKeyRequest,
)
from klaviyo_analytics.db.repos.api_keys import ApiKeyRepository, DuplicateKeyNameError

router = APIRouter(
    prefix="/api", tags=["administration"], responses=ERROR_RESPONSES, dependencies=[KnownQuery]
)
_keys = ApiKeyRepository()


@router.post("/cache/clear", response_model=CacheCleared, summary="Drop every cached answer")
async def clear_cache(state: State, principal: Admin) -> CacheCleared:
    """Drop every cached answer (admin); recorded in the audit log."""
    state.data_changed()
    cleared = await state.cache.clear()
    await audit(state, principal, "cache.clear", {"cleared": cleared, "backend": state.cache.name})
    return CacheCleared(cleared=cleared, backend=state.cache.name)


@router.get("/keys", response_model=ApiKeysResponse, summary="List API keys")
async def list_keys(state: State, _: Admin) -> ApiKeysResponse:
    """Return every key with its role and prefix, never its secret (admin)."""
    keys = await state.db.run(_keys.list)
    return ApiKeysResponse(keys=[ApiKeyModel.model_validate(k) for k in keys])


@router.post("/keys", response_model=NewApiKey, status_code=201, summary="Create an API key")
async def new_key(state: State, principal: Admin, body: NewApiKeyRequest) -> NewApiKey:
    """Create a key and show its token this once (admin); recorded in the audit log."""
    try:
        created = await state.db.run(
            lambda c: create_key(
                c,
                name=body.name,
                role=body.role,
                actor=principal.name,
                actor_key_id=principal.key_id,
            )
        )
    except DuplicateKeyNameError as exc:
        raise ConflictError(str(exc)) from None
    return NewApiKey(key=ApiKeyModel.model_validate(created.key), token=created.token)


@router.delete(
    "/keys/{key_id}",
    response_model=ApiKeyModel,
    summary="Revoke an API key",
    responses={404: {"description": "No such key"}},
)
async def delete_key(
    state: State, principal: Admin, key_id: Annotated[int, Path(ge=1, le=2**63 - 1)]
) -> ApiKeyModel:
    """Revoke a key (admin); it stops working at once on this server."""
    key = await state.db.run(
        lambda c: revoke_key(c, key_id, actor=principal.name, actor_key_id=principal.key_id)
    )
    if key is None:
        raise ResourceNotFoundError(f"no API key {key_id}")
    state.auth.forget()
    return ApiKeyModel.model_validate(key)
