"""Apply the numbered SQL migrations in `db/migrations/`.

Each file runs in its own transaction and is recorded with its SHA-256 checksum in
`schema_migrations`. A session-level advisory lock serialises concurrent runs: the second waits,
then finds nothing left to do. An applied file whose checksum changed is refused.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row

from klaviyo_analytics.db.pool import describe_target
from klaviyo_analytics.errors import MigrationError

logger = logging.getLogger(__name__)

# Any constant will do, as long as nothing else in the database uses it.
MIGRATION_LOCK_KEY = 7_261_548_301
FILE_PATTERN = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One numbered migration file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """Return the SHA-256 of the file's text."""
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def filename(self) -> str:
        """Return the file name, `NNNN_name.sql`."""
        return f"{self.version:04d}_{self.name}.sql"


@dataclass(frozen=True)
class MigrationStatus:
    """Whether a migration is applied, and when."""

    migration: Migration
    applied_at: datetime | None


def load_migrations(folder: Path | None = None) -> list[Migration]:
    """Read the migration files in version order.

    Raises MigrationError on a misnamed file or a repeated version number.
    """
    if folder is None:
        entries = [
            (entry.name, entry.read_text(encoding="utf-8"))
            for entry in resources.files("klaviyo_analytics.db").joinpath("migrations").iterdir()
            if entry.name.endswith(".sql")
        ]
    else:
        entries = [(p.name, p.read_text(encoding="utf-8")) for p in folder.glob("*.sql")]
    migrations: dict[int, Migration] = {}
    for name, text in entries:
        match = FILE_PATTERN.match(name)
        if match is None:
            raise MigrationError(f"migration file {name!r} is not named NNNN_lower_snake.sql")
        version = int(match.group(1))
        if version in migrations:
            raise MigrationError(
                f"migrations {migrations[version].filename} and {name} share version {version}"
            )
        migrations[version] = Migration(version, match.group(2), text)
    return [migrations[v] for v in sorted(migrations)]


async def migrate(
    conninfo: str,
    *,
    migrations: list[Migration] | None = None,
    on_apply: Callable[[Migration, float], None] | None = None,
) -> list[Migration]:
    """Apply every pending migration; return the ones applied by this call.

    Raises MigrationError when an applied file was edited, or when a file fails (that file's
    changes are rolled back; earlier files stay applied).
    """
    todo = load_migrations() if migrations is None else migrations
    applied_now: list[Migration] = []
    async with await _connect(conninfo) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            await _ensure_history_table(conn)
            applied = await _applied_checksums(conn)
            _check_unchanged(todo, applied)
            for migration in todo:
                if migration.version in applied:
                    continue
                started = time.perf_counter()
                try:
                    async with conn.transaction():
                        await conn.execute(migration.sql.encode())
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum, duration_ms)"
                            " VALUES (%s, %s, %s, %s)",
                            (
                                migration.version,
                                migration.name,
                                migration.checksum,
                                round((time.perf_counter() - started) * 1000),
                            ),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(
                        f"migration {migration.filename} failed and was rolled back: "
                        f"{str(exc).strip().splitlines()[0]}"
                    ) from exc
                elapsed = time.perf_counter() - started
                logger.info("applied migration %s in %.0f ms", migration.filename, elapsed * 1000)
                if on_apply is not None:
                    on_apply(migration, elapsed)
                applied_now.append(migration)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied_now


async def status(
    conninfo: str, *, migrations: list[Migration] | None = None
) -> list[MigrationStatus]:
    """Return every known migration with its applied time (None when pending).

    Raises MigrationError when an applied file was edited.
    """
    todo = load_migrations() if migrations is None else migrations
    async with await _connect(conninfo) as conn:
        cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL AS present")
        row = await cur.fetchone()
        if row is None or not row["present"]:
            return [MigrationStatus(m, None) for m in todo]
        applied = await _applied_checksums(conn)
        _check_unchanged(todo, applied)
        cur = await conn.execute("SELECT version, applied_at FROM schema_migrations")
        times = {r["version"]: r["applied_at"] for r in await cur.fetchall()}
    return [MigrationStatus(m, times.get(m.version)) for m in todo]


async def _connect(conninfo: str) -> AsyncConnection[DictRow]:
    try:
        return await AsyncConnection.connect(
            conninfo, autocommit=True, row_factory=dict_row, options="-c TimeZone=UTC"
        )
    except psycopg.OperationalError as exc:
        raise MigrationError(
            f"cannot connect to PostgreSQL as {describe_target(conninfo)} to migrate"
        ) from exc


async def _ensure_history_table(conn: AsyncConnection[DictRow]) -> None:
    await conn.execute(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version      integer PRIMARY KEY,
            name         text NOT NULL,
            checksum     text NOT NULL,
            duration_ms  integer NOT NULL,
            applied_at   timestamptz NOT NULL DEFAULT now()
        )
        """
    )


async def _applied_checksums(conn: AsyncConnection[DictRow]) -> dict[int, tuple[str, str]]:
    cur = await conn.execute("SELECT version, name, checksum FROM schema_migrations")
    return {r["version"]: (r["name"], r["checksum"]) for r in await cur.fetchall()}


def _check_unchanged(todo: list[Migration], applied: dict[int, tuple[str, str]]) -> None:
    for migration in todo:
        recorded = applied.get(migration.version)
        if recorded is not None and recorded[1] != migration.checksum:
            raise MigrationError(
                f"migration {migration.filename} was edited after it was applied "
                f"(checksum {migration.checksum[:12]} differs from the applied "
                f"{recorded[1][:12]}); restore the original file and put the change in a new "
                "migration"
            )
