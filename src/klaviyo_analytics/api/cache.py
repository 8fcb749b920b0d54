"""Response cache: in process (a TTL + LRU dict) by default, Redis when REDIS_URL is set.

Entries are rendered JSON bodies, keyed by group (which data they show), path, query and the
caller's role. A sync invalidates the groups its stream feeds (`groups_for_stream`); POST
/api/cache/clear drops everything. Errors are never cached: only 200 answers are stored.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from klaviyo_analytics.sync.registry import REGISTRY

logger = logging.getLogger(__name__)

REDIS_PREFIX = "klaviyo-analytics:cache:"

# Which cached groups each stream's data feeds (declared with the stream); every stream also
# feeds "account" (its last sync time).
STREAM_GROUPS: dict[str, frozenset[str]] = {s.name: s.cache_groups for s in REGISTRY}
ALL_GROUPS = frozenset().union(*STREAM_GROUPS.values()) | {"account"}


def groups_for_stream(stream: str) -> frozenset[str]:
    """Return the cache groups whose answers a sync of `stream` may change."""
    return STREAM_GROUPS.get(stream, ALL_GROUPS) | {"account"}


def cache_key(group: str, path: str, query: Iterable[tuple[str, str]], role: str) -> str:
    """Return the key of one answer: its group, then a digest of path, sorted query and role."""
    text = path + "?" + "&".join(f"{k}={v}" for k, v in sorted(query)) + "#" + role
    return f"{group}:{hashlib.sha256(text.encode()).hexdigest()}"


@dataclass
class CacheStats:
    """Counters of lookups, for /metrics."""

    hits: int = 0
    misses: int = 0
    invalidations: int = 0


class Cache(Protocol):
    """What the API needs of a cache backend."""

    name: str
    stats: CacheStats

    async def get(self, key: str) -> bytes | None:
        """Return the stored body, or None when absent or expired."""
        ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Store a body for `ttl_s` seconds."""
        ...

    async def invalidate(self, groups: Iterable[str]) -> int:
        """Drop every entry of these groups; return how many were dropped."""
        ...

    async def clear(self) -> int:
        """Drop every entry; return how many were dropped."""
        ...

    async def aclose(self) -> None:
        """Release the backend's connections."""
        ...


# What one entry costs beyond its body: the key string, the tuple and the dict slot (measured
# with sys.getsizeof on CPython 3.11, rounded up).
ENTRY_OVERHEAD_BYTES = 300
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class MemoryCache:
    """A per-process cache: entries expire after their TTL; the least recently used go first.

    It holds at most `max_entries` bodies and at most `max_bytes` bytes (bodies plus a fixed
    per-entry overhead); a body larger than a quarter of `max_bytes` is not stored at all.
    """

    name = "memory"

    def __init__(
        self,
        *,
        max_entries: int = 1000,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Hold at most `max_entries` bodies and `max_bytes` bytes."""
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock
        self.stats = CacheStats()
        self.bytes = 0
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def _drop(self, key: str) -> None:
        _, body = self._data.pop(key)
        self.bytes -= len(body) + ENTRY_OVERHEAD_BYTES

    async def get(self, key: str) -> bytes | None:
        """Return the stored body, or None when absent or expired."""
        found = self._data.get(key)
        if found is None or found[0] <= self.clock():
            if found is not None:
                self._drop(key)
            self.stats.misses += 1
            return None
        self._data.move_to_end(key)
        self.stats.hits += 1
        return found[1]

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Store a body for `ttl_s` seconds, evicting the least recently used beyond the caps."""
        if ttl_s <= 0 or len(value) + ENTRY_OVERHEAD_BYTES > self.max_bytes // 4:
            return
        if key in self._data:
            self._drop(key)
        self._data[key] = (self.clock() + ttl_s, value)
        self.bytes += len(value) + ENTRY_OVERHEAD_BYTES
        while len(self._data) > self.max_entries or self.bytes > self.max_bytes:
            self._drop(next(iter(self._data)))

    def invalidate_now(self, groups: Iterable[str]) -> int:
        """Drop every entry of these groups at once (no await needed)."""
        prefixes = tuple(f"{g}:" for g in groups)
        doomed = [key for key in self._data if key.startswith(prefixes)]
        for key in doomed:
            self._drop(key)
        self.stats.invalidations += 1
        return len(doomed)

    async def invalidate(self, groups: Iterable[str]) -> int:
        """Drop every entry of these groups; return how many were dropped."""
        return self.invalidate_now(groups)

    async def clear(self) -> int:
        """Drop every entry; return how many were dropped."""
        dropped = len(self._data)
        self._data.clear()
        self.bytes = 0
        self.stats.invalidations += 1
        return dropped

    async def aclose(self) -> None:
        """Nothing to release."""


class RedisCache:
    """A cache shared by every server process, in Redis (`redis.asyncio`)."""

    name = "redis"

    def __init__(self, client: Any, *, prefix: str = REDIS_PREFIX) -> None:
        """Use an open `redis.asyncio.Redis` client; keys are stored under `prefix`."""
        self.client = client
        self.prefix = prefix
        self.stats = CacheStats()

    @classmethod
    def from_url(cls, url: str, *, prefix: str = REDIS_PREFIX) -> RedisCache:
        """Create a client for `url` (not yet connected: redis connects on first use)."""
        import redis.asyncio as aioredis  # imported here: Redis is optional

        return cls(aioredis.Redis.from_url(url, socket_timeout=2.0), prefix=prefix)

    async def get(self, key: str) -> bytes | None:
        """Return the stored body, or None when absent, expired or Redis is unreachable."""
        from redis.exceptions import RedisError

        try:
            value = await self.client.get(self.prefix + key)
        except RedisError as exc:
            # A cache that cannot answer is a miss, not a failed request.
            logger.warning("redis cache unavailable, answering uncached: %s", exc)
            value = None
        if value is None:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return bytes(value)

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        """Store a body for `ttl_s` seconds (Redis expires it)."""
        from redis.exceptions import RedisError

        if ttl_s <= 0:
            return
        try:
            await self.client.set(self.prefix + key, value, px=max(1, int(ttl_s * 1000)))
        except RedisError as exc:
            logger.warning("redis cache unavailable, not storing: %s", exc)

    async def _drop(self, pattern: str) -> int:
        dropped = 0
        batch: list[bytes] = []
        async for key in self.client.scan_iter(match=pattern, count=500):
            batch.append(key)
            if len(batch) >= 500:
                dropped += int(await self.client.delete(*batch))
                batch.clear()
        if batch:
            dropped += int(await self.client.delete(*batch))
        self.stats.invalidations += 1
        return dropped

    async def invalidate(self, groups: Iterable[str]) -> int:
        """Drop every entry of these groups; return how many were dropped."""
        return sum([await self._drop(f"{self.prefix}{group}:*") for group in groups])

    async def clear(self) -> int:
        """Drop every entry under the prefix; return how many were dropped."""
        return await self._drop(f"{self.prefix}*")

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()
