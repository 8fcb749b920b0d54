"""The SQL that backups need: exact row counts, scratch databases, sessions, pg_restore runs."""

from __future__ import annotations

import logging
import os
import re
import secrets
import tempfile
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
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
# Restores run as this role: it logs in, owns the database it restores into, and is no
# superuser, so an archive's statements (an index function calling COPY ... TO PROGRAM, say)
# cannot reach the operating system. Default privileges cannot be restored by it (they name
# the original owner); the project's own are set again after the restore.
RESTORE_ROLE = "klaviyo_restore"
DEFAULT_PRIVILEGES = (
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO analytics_reader",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE ON TABLES TO etl_writer",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO etl_writer",
)
# Extensions an archive of ours may need; created by the administrator before the restore,
# since a role that is no superuser cannot create untrusted ones.
KNOWN_EXTENSIONS = ("pg_trgm", "timescaledb")
EXTENSION_ENTRY = re.compile(r"^\d+; \d+ \d+ (?:EXTENSION - |COMMENT - EXTENSION )(\S+)")


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


def restore_role(admin: str) -> str:
    """Create (or reset) the restore role and return a connection string that logs in as it.

    It gets a fresh random password each time (for servers that want one) and no attribute
    beyond LOGIN; it is never made a member of any role.
    Raises BackupError when the administrator may not create roles.
    """
    password = secrets.token_urlsafe(24)
    attributes = sql.SQL(
        "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD {}"
    ).format(sql.Literal(password))
    role = sql.Identifier(RESTORE_ROLE)
    try:
        with connect(admin) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (RESTORE_ROLE,)
            ).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(sql.SQL(verb + " ROLE {} {}").format(role, attributes))
    except psycopg.Error as exc:
        raise BackupError(
            f"cannot prepare the restore role {RESTORE_ROLE}: {first_line(str(exc))}"
        ) from exc
    params = {k: str(v) for k, v in conninfo_to_dict(admin).items() if v is not None}
    params.update(user=RESTORE_ROLE, password=password)
    return make_conninfo(**params)


def create_database(admin: str, name: str, *, owner: str | None = None) -> None:
    """Create an empty database `name` from template0, owned by `owner` if given.

    With an owner, the extensions the archive may need are created in it by the
    administrator (fixed statements only).
    Raises BackupError naming the database when it cannot be created.
    """
    query = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
    if owner is not None:
        query = query + sql.SQL(" OWNER {}").format(sql.Identifier(owner))
    try:
        with connect(admin) as conn:
            conn.execute(query)
        if owner is not None:
            with connect(with_dbname(admin, name)) as conn:
                available = {
                    str(r[0])
                    for r in conn.execute(
                        "SELECT name FROM pg_available_extensions WHERE name = ANY(%s)",
                        (list(KNOWN_EXTENSIONS),),
                    ).fetchall()
                }
                for ext in sorted(available):
                    conn.execute(
                        sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(ext))
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


def pg_restore_into(
    path: Path, *, conninfo: str, dbname: str, tools: PgTools, role: str | None = None
) -> str:
    """Restore archive `path` into the existing, empty database `dbname`, all or nothing.

    With `role` (a connection string of `restore_role`), pg_restore logs in as that role, so
    nothing in the archive runs with superuser rights; `conninfo` (the administrator) then
    sets the project's default privileges again. Objects end up owned by the restoring user
    (--no-owner); grants are kept, so the roles they name (analytics_reader, etl_writer) must
    exist on the target server. An archive of a TimescaleDB database is restored by
    TimescaleDB's documented procedure (timescaledb_pre_restore/post_restore around it).
    Returns the login the objects were restored as (`role`, or `conninfo`).
    Raises BackupError with pg_restore's last error lines.
    """
    procedure: AbstractContextManager[None] = nullcontext()
    if archive_uses_timescaledb(path, tools):
        procedure = timescaledb_restore(conninfo, dbname)
        if role is not None:
            # TimescaleDB's catalog and internal chunk schemas can only be restored by a
            # superuser, so its archives are restored by the administrator; what keeps a
            # crafted archive out is then the sidecar's HMAC alone (docs/backup.md).
            logger.warning(
                "%s holds a TimescaleDB database: restoring it as the administrator, not as "
                "the restore role (TimescaleDB's catalog needs a superuser)",
                path.name,
            )
            role = None
    with procedure:
        _pg_restore(path, conninfo=conninfo, dbname=dbname, tools=tools, role=role)
    logger.info("restored %s into database %s", path, dbname)
    return role or conninfo


def _pg_restore(
    path: Path, *, conninfo: str, dbname: str, tools: PgTools, role: str | None
) -> None:
    login = role or conninfo
    args = [
        tools.program("pg_restore"),
        "--no-password",
        "--no-owner",
        "--exit-on-error",
        "--single-transaction",
    ]
    listing: Path | None = None
    if role is not None:
        listing = _without_default_acls(path, tools)
        args.append(f"--use-list={listing}")
    args += [
        "--dbname",
        make_conninfo(dbname=dbname),  # the rest of the connection comes from PG* variables
        str(path),
    ]
    try:
        run_tool(
            args,
            env=tool_env(login, dbname=dbname),
            what=f"restoring {path} into database {dbname}",
        )
    finally:
        if listing is not None:
            listing.unlink(missing_ok=True)
    if role is not None:
        with connect(with_dbname(conninfo, dbname)) as conn:
            for statement in DEFAULT_PRIVILEGES:
                conn.execute(sql.SQL(statement))


def _is_known_extension_entry(line: str) -> bool:
    # `2; 3079 16385 EXTENSION - pg_trgm` and `4512; 0 0 COMMENT - EXTENSION pg_trgm`: the
    # administrator created these extensions already, and only their owner may comment on them.
    found = EXTENSION_ENTRY.search(line)
    return found is not None and found.group(1) in KNOWN_EXTENSIONS


def _without_default_acls(path: Path, tools: PgTools) -> Path:
    """Write the archive's table of contents minus what the restore role may not run; return it."""
    out = run_tool(
        [tools.program("pg_restore"), "--list", str(path)],
        env=tool_env(""),
        what=f"reading the table of contents of {path}",
    )
    kept = [
        line
        for line in out.splitlines()
        if " DEFAULT ACL " not in line and not _is_known_extension_entry(line)
    ]
    fd, name = tempfile.mkstemp(prefix="ka-restore-", suffix=".list")
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(kept) + "\n")
    return Path(name)
