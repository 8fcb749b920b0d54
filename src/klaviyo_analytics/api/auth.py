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
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

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
# How long an unknown token is remembered as unknown, and how many such tokens are remembered.
NEGATIVE_CACHE_S = 30.0
NEGATIVE_CACHE_ENTRIES = 10_000
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


async def create_key(
    conn: Conn, *, name: str, role: str, actor: str = "cli", actor_key_id: int | None = None
) -> NewKey:
    """Create a key with this name and role and record it in the audit log.

    `actor` names who acts and `actor_key_id` the API key they act with (None from the CLI).
    Raises InvalidKeyError for a role other than reader or admin, or a name that is empty,
    longer than 200 characters or holds control characters; DuplicateKeyNameError when an
    active key of the role has the name already.
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
        key_id=actor_key_id,
        action="apikey.create",
        details={"id": key.id, "name": key.name, "role": role},
    )
    return NewKey(key, token)


async def revoke_key(
    conn: Conn, key_id: int, *, actor: str = "cli", actor_key_id: int | None = None
) -> ApiKey | None:
    """Revoke a key and record it (with the acting key's id) in the audit log.

    Return it, or None when unknown.
    """
    key = await _keys.revoke(conn, key_id)
    if key is not None:
        await _audit.record(
            conn,
            actor=actor,
            key_id=actor_key_id,
            action="apikey.revoke",
            details={"id": key.id, "name": key.name},
        )
    return key


@dataclass
class TokenBucket:
    """Token buckets per key (an API key id, a client address): `rate_per_minute` a minute,
    bursts up to the same number. At most `max_keys` buckets are kept (full ones go first)."""

    rate_per_minute: int
    clock: Callable[[], float] = time.monotonic
    max_keys: int = 100_000
    _buckets: dict[Hashable, tuple[float, float]] = field(default_factory=dict)

    def _tokens(self, key: Hashable, now: float) -> float:
        capacity = float(self.rate_per_minute)
        tokens, last = self._buckets.get(key, (capacity, now))
        return min(capacity, tokens + (now - last) * self.rate_per_minute / 60.0)

    def wait_s(self, key: Hashable) -> float:
        """Return 0 when `key` has a token left, else seconds until it has one (spends none)."""
        tokens = self._tokens(key, self.clock())
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / (self.rate_per_minute / 60.0)

    def take(self, key: Hashable) -> float:
        """Spend one token of this key; return 0 when allowed, else seconds until one is free."""
        now = self.clock()
        tokens = self._tokens(key, now)
        if len(self._buckets) >= self.max_keys and key not in self._buckets:
            self._forget_full(now)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / (self.rate_per_minute / 60.0)

    def _forget_full(self, now: float) -> None:
        """Drop the buckets that have refilled (they hold no information); else all of them."""
        full = [k for k in self._buckets if self._tokens(k, now) >= self.rate_per_minute]
        for k in full or list(self._buckets):
            del self._buckets[k]


class Authenticator:
    """Check presented tokens against the stored hashes, with a short in-process memory."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.monotonic) -> None:
        """Check keys against `db`."""
        self.db = db
        self.clock = clock
        self._known: dict[str, tuple[float, Principal]] = {}
        self._unknown: dict[str, float] = {}
        self.lookups = 0
        self._touched: dict[int, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def principal(self, token: str) -> Principal | None:
        """Return who holds `token`, or None when it is unknown or revoked."""
        digest = hash_token(token)
        now = self.clock()
        if self._unknown.get(digest, now) > now:
            return None
        cached = self._known.get(digest)
        found: Principal | None
        if cached is not None and cached[0] > now:
            found = cached[1]
        else:
            self.lookups += 1
            key = await self.db.run(lambda c: _keys.find_active(c, digest))
            found = Principal(key.id, key.name, key.role) if key else None
            if found is None:
                # Unknown tokens live apart, so a flood of them cannot push out the known keys.
                if len(self._unknown) >= NEGATIVE_CACHE_ENTRIES:
                    self._unknown.clear()
                self._unknown[digest] = now + NEGATIVE_CACHE_S
                return None
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
        """Drop the memory of verified and unknown keys (after a revocation or a new key)."""
        self._known.clear()
        self._unknown.clear()

    async def aclose(self) -> None:
        """Wait for pending last-used updates."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _touch(self, key_id: int) -> None:
        try:
            await self.db.run(lambda c: _keys.touch(c, key_id))
        except KlaviyoAnalyticsError as exc:
            logger.warning("could not record the use of API key %d: %s", key_id, exc)
