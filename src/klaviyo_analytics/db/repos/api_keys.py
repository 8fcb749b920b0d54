"""API keys (stored as SHA-256 hashes only) and the audit log of administrative actions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg.types.json import Jsonb

from klaviyo_analytics.db.repos.base import Conn
from klaviyo_analytics.errors import KlaviyoAnalyticsError

KEY_COLUMNS: LiteralString = "id, name, role, prefix, created_at, last_used_at, revoked_at"


class DuplicateKeyNameError(KlaviyoAnalyticsError, ValueError):
    """An active key of the same role already has this name."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One API key, without its secret (only its hash is stored, and is not returned)."""

    id: int
    name: str
    role: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        """Whether the key still opens the API."""
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One administrative action: who, when, what, and its details."""

    id: int
    at: datetime
    key_id: int | None
    actor: str
    action: str
    details: dict[str, Any]


class ApiKeyRepository:
    """Create, find, list and revoke API keys."""

    async def create(
        self, conn: Conn, *, name: str, role: str, token_hash: str, prefix: str
    ) -> ApiKey:
        """Store a new key's hash; return the key.

        Raises DuplicateKeyNameError when an active key of this role has the name already.
        """
        try:
            # A savepoint keeps the caller's transaction usable after a refused name.
            async with conn.transaction():
                cur = await conn.execute(
                    "INSERT INTO api_keys (name, role, token_hash, prefix) VALUES (%s, %s, %s, %s)"
                    " RETURNING " + KEY_COLUMNS,
                    (name, role, token_hash, prefix),
                )
                row = await cur.fetchone()
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name != "api_keys_active_name_idx":
                raise
            raise DuplicateKeyNameError(
                f"an active {role} key named {name!r} exists already; revoke it or pick "
                "another name"
            ) from None
        assert row is not None
        return ApiKey(**row)

    async def find_active(self, conn: Conn, token_hash: str) -> ApiKey | None:
        """Return the unrevoked key with this hash, or None."""
        cur = await conn.execute(
            "SELECT " + KEY_COLUMNS + " FROM api_keys WHERE token_hash = %s AND revoked_at IS NULL",
            (token_hash,),
        )
        row = await cur.fetchone()
        return ApiKey(**row) if row else None

    async def touch(self, conn: Conn, key_id: int) -> None:
        """Record that a key was used just now."""
        await conn.execute("UPDATE api_keys SET last_used_at = now() WHERE id = %s", (key_id,))

    async def list(self, conn: Conn, *, include_revoked: bool = True) -> list[ApiKey]:
        """Return every key, oldest first."""
        cur = await conn.execute(
            "SELECT " + KEY_COLUMNS + " FROM api_keys"
            " WHERE %(all)s OR revoked_at IS NULL ORDER BY id",
            {"all": include_revoked},
        )
        return [ApiKey(**row) for row in await cur.fetchall()]

    async def revoke(self, conn: Conn, key_id: int) -> ApiKey | None:
        """Revoke a key (idempotent); return it, or None when there is no such key."""
        cur = await conn.execute(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s"
            " RETURNING " + KEY_COLUMNS,
            (key_id,),
        )
        row = await cur.fetchone()
        return ApiKey(**row) if row else None


class AuditRepository:
    """Append to and read the audit log."""

    async def record(
        self,
        conn: Conn,
        *,
        actor: str,
        action: str,
        key_id: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> int:
        """Append one entry; return its id."""
        cur = await conn.execute(
            "INSERT INTO audit_log (key_id, actor, action, details) VALUES (%s, %s, %s, %s)"
            " RETURNING id",
            (key_id, actor, action, Jsonb(details or {})),
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row["id"])

    async def recent(self, conn: Conn, *, limit: int = 100) -> list[AuditEntry]:
        """Return the newest entries first."""
        cur = await conn.execute(
            "SELECT id, at, key_id, actor, action, details FROM audit_log"
            " ORDER BY at DESC, id DESC LIMIT %s",
            (limit,),
        )
        return [AuditEntry(**row) for row in await cur.fetchall()]
