"""API keys: high-entropy tokens stored as SHA-256 hashes, roles, and per-key rate limits.

A key is shown once, at creation; the database keeps its hash and a short prefix for listing.
Keys are never logged. Roles: `reader` may GET, `admin` may also trigger syncs, clear the cache
and manage keys.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from klaviyo_analytics.api.errors import ApiError
from klaviyo_analytics.db.pool import Conn, Database
from klaviyo_analytics.db.repos.api_keys import ApiKey, ApiKeyRepository, AuditRepository
from klaviyo_analytics.errors import KlaviyoAnalyticsError

logger = logging.getLogger(__name__)

ROLES = ("reader", "admin")
TOKEN_PREFIX = "ka_"  # noqa: S105 (a label, not a secret)
SHOWN_PREFIX_CHARS = 10
# How long a verified key is trusted without asking the database again.
AUTH_CACHE_S = 10.0
TOUCH_EVERY_S = 60.0

_keys = ApiKeyRepository()
_audit = AuditRepository()


class InvalidKeyError(ApiError, ValueError):
    """A new key's role is neither reader nor admin, or its name is empty, long or unprintable."""

    status = 422
    code = "invalid_parameter"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, name and role."""

    key_id: int
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        """Whether the key may run administrative actions."""
        return self.role == "admin"


@dataclass(frozen=True)
class NewKey:
    """A key just created: `token` is the secret, shown once and never stored."""

    key: ApiKey
    token: str


def hash_token(token: str) -> str:
    """Return the SHA-256 (hex) under which a token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """Return a fresh token with 256 bits of randomness."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


async def create_key(conn: Conn, *, name: str, role: str, actor: str = "cli") -> NewKey:
    """Create a key with this name and role and record it in the audit log.

    Raises InvalidKeyError for a role other than reader or admin, or a name that is empty,
    longer than 200 characters or holds control characters.
    """
    if role not in ROLES:
        raise InvalidKeyError(f"unknown role {role!r}; choose one of: {', '.join(ROLES)}")
    if not name.strip() or len(name) > 200 or not name.isprintable():
        raise InvalidKeyError("a key needs a printable name of 1 to 200 characters")
    token = new_token()
    key = await _keys.create(
        conn,
        name=name.strip(),
        role=role,
        token_hash=hash_token(token),
        prefix=token[:SHOWN_PREFIX_CHARS],
    )
    await _audit.record(
        conn,
        actor=actor,
        action="apikey.create",
        details={"id": key.id, "name": key.name, "role": role},
    )
    return NewKey(key, token)


async def revoke_key(conn: Conn, key_id: int, *, actor: str = "cli") -> ApiKey | None:
    """Revoke a key and record it in the audit log; return it, or None when unknown."""
    key = await _keys.revoke(conn, key_id)
    if key is not None:
        await _audit.record(
            conn, actor=actor, action="apikey.revoke", details={"id": key.id, "name": key.name}
        )
    return key


@dataclass
class TokenBucket:
    """Per-key token buckets: `rate_per_minute` requests a minute, bursts up to the same number."""

    rate_per_minute: int
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[int, tuple[float, float]] = field(default_factory=dict)

    def take(self, key_id: int) -> float:
        """Spend one token of this key; return 0 when allowed, else seconds until one is free."""
        capacity = float(self.rate_per_minute)
        per_s = self.rate_per_minute / 60.0
        now = self.clock()
        tokens, last = self._buckets.get(key_id, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * per_s)
        if tokens >= 1.0:
            self._buckets[key_id] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key_id] = (tokens, now)
        return (1.0 - tokens) / per_s


class Authenticator:
    """Check presented tokens against the stored hashes, with a short in-process memory."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.monotonic) -> None:
        """Check keys against `db`."""
        self.db = db
        self.clock = clock
        self._known: dict[str, tuple[float, Principal | None]] = {}
        self._touched: dict[int, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def principal(self, token: str) -> Principal | None:
        """Return who holds `token`, or None when it is unknown or revoked."""
        digest = hash_token(token)
        now = self.clock()
        cached = self._known.get(digest)
        if cached is not None and cached[0] > now:
            found = cached[1]
        else:
            key = await self.db.run(lambda c: _keys.find_active(c, digest))
            found = Principal(key.id, key.name, key.role) if key else None
            if len(self._known) > 10_000:
                self._known.clear()
            self._known[digest] = (now + AUTH_CACHE_S, found)
        if (
            found is not None
            and now - self._touched.get(found.key_id, -TOUCH_EVERY_S) >= TOUCH_EVERY_S
        ):
            self._touched[found.key_id] = now
            task = asyncio.get_running_loop().create_task(self._touch(found.key_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return found

    def forget(self) -> None:
        """Drop the memory of verified keys (after a revocation)."""
        self._known.clear()

    async def aclose(self) -> None:
        """Wait for pending last-used updates."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _touch(self, key_id: int) -> None:
        try:
            await self.db.run(lambda c: _keys.touch(c, key_id))
        except (KlaviyoAnalyticsError, psycopg.Error) as exc:
            logger.warning("could not record the use of API key %d: %s", key_id, exc)
