"""The SQL that backups need: exact row counts, scratch databases, sessions, pg_restore runs."""

from __future__ import annotations

import logging
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import TupleRow

from klaviyo_analytics.backup.errors import BackupError
from klaviyo_analytics.backup.timescale import archive_uses_timescaledb, timescaledb_restore
from klaviyo_analytics.backup.tools import (
    PgTools,
    connect,
    first_line,
    run_tool,
    tool_env,
    with_dbname,
)
from klaviyo_analytics.errors import DatabaseUnavailableError

logger = logging.getLogger(__name__)

# Ordinary and partitioned tables of the public schema; partitions are counted on their own
# too, as pg_restore lists them as tables.
TABLES_SQL = """
SELECT c.relname
FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
ORDER BY c.relname
"""
MAINTENANCE_DATABASES = ("postgres", "template1")


def count_rows(conn: psycopg.Connection[TupleRow]) -> dict[str, int]:
    """Return the exact number of rows of every public table, in the caller's transaction."""
    counts: dict[str, int] = {}
    for (name,) in conn.execute(TABLES_SQL).fetchall():
        query = sql.SQL("SELECT count(*) FROM public.{}").format(sql.Identifier(str(name)))
        row = conn.execute(query).fetchone()
        counts[str(name)] = int(row[0]) if row else 0
    return counts


def admin_conninfo(conninfo: str) -> str:
    """Return a connection string to a maintenance database of the same server.

    Raises DatabaseUnavailableError when neither `postgres` nor `template1` accepts us.
    """
    last: DatabaseUnavailableError | None = None
    for name in MAINTENANCE_DATABASES:
        candidate = with_dbname(conninfo, name)
        try:
            with connect(candidate):
                return candidate
        except DatabaseUnavailableError as exc:
            last = exc  # try the next maintenance database
    assert last is not None
    raise last


def database_exists(admin: str, name: str) -> bool:
    """Say whether database `name` exists on the server of `admin`."""
    with connect(admin) as conn:
        return (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            is not None
        )


def create_database(admin: str, name: str) -> None:
    """Create an empty database `name` from template0.

    Raises BackupError naming the database when it cannot be created.
    """
    try:
        with connect(admin) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
            )
    except psycopg.Error as exc:
        raise BackupError(f"cannot create database {name}: {first_line(str(exc))}") from exc


def drop_database(admin: str, name: str) -> None:
    """Drop database `name` if it exists, ending its sessions first."""
    with connect(admin) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def other_sessions(admin: str, name: str) -> list[str]:
    """Describe the client sessions connected to database `name` (`pid user application`).

    Background workers such as autovacuum are not counted: they are no user's connection,
    and DROP DATABASE ends them by itself.
    """
    with connect(admin) as conn:
        rows = conn.execute(
            "SELECT pid, usename, application_name FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
            (name,),
        ).fetchall()
    return [f"pid {pid} ({user or '?'}{', ' + str(app) if app else ''})" for pid, user, app in rows]


def close_database(admin: str, name: str, *, wait_s: float = 15.0) -> int:
    """Refuse new connections to `name`, then end its sessions gracefully; return how many.

    pg_terminate_backend sends SIGTERM: each session rolls back its transaction and exits.
    Raises BackupError naming the database when sessions remain after `wait_s`.
    """
    ident = sql.Identifier(name)
    with connect(admin) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(ident))
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
            (name,),
        ).fetchall()
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            left = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
                " AND backend_type = 'client backend'",
                (name,),
            ).fetchone()
            if left is not None and left[0] == 0:
                return len(rows)
            time.sleep(0.1)
    raise BackupError(f"sessions on database {name} did not end within {wait_s:g}s")


def pg_restore_into(path: Path, *, conninfo: str, dbname: str, tools: PgTools) -> None:
    """Restore archive `path` into the existing, empty database `dbname`, all or nothing.

    Objects end up owned by the restoring user (--no-owner); grants are kept, so the roles they
    name (analytics_reader, etl_writer) must exist on the target server.
    An archive of a TimescaleDB database is restored by TimescaleDB's documented procedure.
    Raises BackupError with pg_restore's last error lines.
    """
    procedure: AbstractContextManager[None] = nullcontext()
    if archive_uses_timescaledb(path, tools):
        procedure = timescaledb_restore(conninfo, dbname)
    with procedure:
        _pg_restore(path, conninfo=conninfo, dbname=dbname, tools=tools)
    logger.info("restored %s into database %s", path, dbname)


def _pg_restore(path: Path, *, conninfo: str, dbname: str, tools: PgTools) -> None:
    run_tool(
        [
            tools.program("pg_restore"),
            "--no-password",
            "--no-owner",
            "--exit-on-error",
            "--single-transaction",
            "--dbname",
            make_conninfo(dbname=dbname),  # the rest of the connection comes from PG* variables
            str(path),
        ],
        env=tool_env(conninfo, dbname=dbname),
        what=f"restoring {path} into database {dbname}",
    )
