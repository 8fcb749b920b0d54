"""The in-process cache (TTL, LRU, groups), the cache key, token buckets and error mapping."""

from __future__ import annotations

import hashlib

from klaviyo_analytics.analytics.errors import InvalidParameterError, SeriesTooShortError
from klaviyo_analytics.api.auth import TokenBucket, hash_token, new_token
from klaviyo_analytics.api.cache import MemoryCache, cache_key, groups_for_stream
from klaviyo_analytics.api.errors import classify
from klaviyo_analytics.errors import DatabaseUnavailableError, KlaviyoAnalyticsError, NotFoundError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_entries_expire_after_their_ttl() -> None:
    clock = FakeClock()
    cache = MemoryCache(clock=clock)
    await cache.set("overview:a", b"1", ttl_s=10)
    assert await cache.get("overview:a") == b"1"
    clock.now += 10
    assert await cache.get("overview:a") is None
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)


async def test_the_least_recently_used_entry_goes_first() -> None:
    cache = MemoryCache(max_entries=2)
    await cache.set("g:a", b"a", 60)
    await cache.set("g:b", b"b", 60)
    await cache.get("g:a")
    await cache.set("g:c", b"c", 60)
    assert await cache.get("g:b") is None
    assert await cache.get("g:a") == b"a" and await cache.get("g:c") == b"c"


async def test_invalidation_drops_only_the_named_groups_and_ttl_zero_stores_nothing() -> None:
    cache = MemoryCache()
    await cache.set("overview:1", b"o", 60)
    await cache.set("segments:1", b"s", 60)
    await cache.set("metrics:1", b"m", 0)
    assert await cache.invalidate(groups_for_stream("lists")) == 1
    assert await cache.get("segments:1") == b"s" and len(cache) == 1
    assert await cache.clear() == 1 and len(cache) == 0


def test_keys_differ_by_group_path_query_and_role_but_not_by_query_order() -> None:
    key = cache_key("overview", "/api/overview", [("range", "today"), ("x", "1")], "reader")
    assert key == cache_key("overview", "/api/overview", [("x", "1"), ("range", "today")], "reader")
    assert key.startswith("overview:")
    assert key != cache_key("overview", "/api/overview", [("range", "today")], "reader")
    assert key != cache_key("overview", "/api/overview", [("range", "today"), ("x", "1")], "admin")


def test_every_stream_invalidates_the_account_and_events_invalidate_analytics() -> None:
    assert all("account" in groups_for_stream(s) for s in ("metrics", "events", "lists"))
    assert {"analytics", "forecast", "overview"} <= groups_for_stream("events")
    assert "segments" not in groups_for_stream("lists")


def test_a_token_bucket_allows_bursts_then_refills_per_key() -> None:
    clock = FakeClock()
    bucket = TokenBucket(60, clock=clock)
    assert all(bucket.take(1) == 0 for _ in range(60))
    wait = bucket.take(1)
    assert 0 < wait <= 1.0
    assert bucket.take(2) == 0  # another key has its own bucket
    clock.now += 1.0
    assert bucket.take(1) == 0


def test_tokens_are_random_and_hashed_with_sha256() -> None:
    tokens = {new_token() for _ in range(100)}
    assert len(tokens) == 100
    assert all(t.startswith("ka_") and len(t) >= 43 for t in tokens)
    token = tokens.pop()
    assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()


def test_domain_errors_map_to_statuses_and_anything_else_to_500() -> None:
    assert classify(NotFoundError("x"))[:2] == (404, "not_found")
    assert classify(InvalidParameterError("x"))[0] == 422
    assert classify(SeriesTooShortError("x"))[:2] == (422, "series_too_short")
    status, _, headers = classify(DatabaseUnavailableError("x"))
    assert status == 503 and headers["Retry-After"]
    assert classify(KlaviyoAnalyticsError("x"))[:2] == (500, "internal_error")
