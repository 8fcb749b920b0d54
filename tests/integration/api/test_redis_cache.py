"""The Redis cache backend, against the machine's Redis when REDIS_URL is set."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from klaviyo_analytics.api.cache import RedisCache
from tests.integration.api.conftest import ApiFactory

REDIS_URL = os.environ.get("REDIS_URL")
pytestmark = pytest.mark.skipif(
    not REDIS_URL, reason="REDIS_URL is not set (e.g. redis://127.0.0.1:6379/0)"
)


@pytest_asyncio.fixture
async def redis_cache() -> AsyncIterator[RedisCache]:
    assert REDIS_URL is not None
    cache = RedisCache.from_url(REDIS_URL, prefix=f"klaviyo-analytics-test:{uuid.uuid4().hex}:")
    try:
        yield cache
    finally:
        await cache.clear()
        await cache.aclose()


async def test_redis_stores_expires_and_invalidates_by_group(redis_cache: RedisCache) -> None:
    await redis_cache.set("overview:1", b"o", 60)
    await redis_cache.set("segments:1", b"s", 60)
    await redis_cache.set("metrics:1", b"m", 0.05)
    assert await redis_cache.get("overview:1") == b"o"
    assert await redis_cache.invalidate(["overview"]) == 1
    assert await redis_cache.get("overview:1") is None
    assert await redis_cache.get("segments:1") == b"s"
    assert await redis_cache.clear() >= 1
    assert await redis_cache.get("segments:1") is None


async def test_the_app_caches_in_redis_and_clears_it(
    make_api: ApiFactory, synced_conninfo: str, redis_cache: RedisCache
) -> None:
    async with make_api(synced_conninfo, cache=redis_cache) as api:
        assert (await api.get("/api/overview")).headers["X-Cache"] == "miss"
        hit = await api.get("/api/overview")
        assert hit.headers["X-Cache"] == "hit" and hit.json()["source"] == "database"
        cleared = await api.http.post("/api/cache/clear", headers=api.admin)
        assert cleared.json()["backend"] == "redis" and cleared.json()["cleared"] == 1
        assert (await api.get("/api/overview")).headers["X-Cache"] == "miss"
