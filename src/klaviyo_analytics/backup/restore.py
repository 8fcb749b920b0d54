"""Restore a backup into a new database, or over the live one.

The backup is verified first (checksum and table of contents) and refused when corrupted, or
when it was made by a newer PostgreSQL major version than the target server runs.

Over the live database, the archive is first restored into a scratch database on the same
server; only when that succeeded is the live database swapped out (renamed aside, the restored
one renamed in, the old one dropped). A failed restore therefore never leaves the live database
damaged. Sessions on the live database block the swap unless `force` is given, which refuses
new connections and ends the existing ones with pg_terminate_backend.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from klaviyo_analytics.backup.database import (
    RESTORE_ROLE,
    admin_conninfo,
    close_database,
    create_database,
    database_exists,
    drop_database,
    other_sessions,
    pg_restore_into,
    restore_role,
)
from klaviyo_analytics.backup.errors import BackupError, RestoreRefusedError
from klaviyo_analytics.backup.timescale import end_background_workers, start_background_workers
from klaviyo_analytics.backup.tools import (
    PgTools,
    connect,
    find_tools,
    first_line,
    server_major,
    with_dbname,
)
from klaviyo_analytics.backup.verify import verify_backup
from klaviyo_analytics.db.pool import describe_target

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestoreResult:
    """A finished restore."""

    path: Path
    database: str
    replaced_live: bool
    sessions_ended: int
    duration_s: float


def restore_backup(
    path: Path,
    *,
    conninfo: str,
    new_db: str | None = None,
    force: bool = False,
    tools: PgTools | None = None,
    key_file: Path | None = None,
) -> RestoreResult:
    """Restore backup `path` into database `new_db`, or over the database of `conninfo`.

    Raises BackupCorruptError (naming the file and the failed check) for a damaged backup;
    RestoreRefusedError when the target server is older than the backup's, when `new_db`
    already exists, or when the live database has sessions and `force` is not given;
    BackupError when pg_restore fails (the live database is then untouched), or when the
    sidecar is not authentic under `key_file` (see `read_info`). The archive's statements run
    as the restore role, no superuser, which owns the restored database.
    """
    started = time.monotonic()
    report = verify_backup(path, tools=tools, record=False, key_file=key_file)
    info = report.info
    target_major, target_version = server_major(conninfo)
    if info.server_major > target_major:
        raise RestoreRefusedError(
            f"backup {path} was made from PostgreSQL {info.server_version}; the target server "
            f"({describe_target(conninfo)}) runs {target_version}, an older major version: "
            "restore it into a PostgreSQL "
            f"{info.server_major} or newer server"
        )
    tools = tools or find_tools(min_major=info.tool_major, prefer_major=target_major)
    admin = admin_conninfo(conninfo)
    if new_db is not None:
        if database_exists(admin, new_db):
            raise RestoreRefusedError(
                f"database {new_db} already exists; choose another name or drop it first"
            )
        restorer = restore_role(admin)
        create_database(admin, new_db, owner=RESTORE_ROLE)
        try:
            pg_restore_into(path, conninfo=admin, dbname=new_db, tools=tools, role=restorer)
        except BackupError:
            drop_database(admin, new_db)
            raise
        return RestoreResult(path, new_db, False, 0, round(time.monotonic() - started, 3))

    live = str(conninfo_to_dict(conninfo).get("dbname") or "")
    if not live:
        raise BackupError(f"no database named in the connection ({describe_target(conninfo)})")
    _refuse_busy(admin, live, force=force)
    scratch = f"{live[:40]}_restore_{uuid.uuid4().hex[:8]}"
    restorer = restore_role(admin)
    create_database(admin, scratch, owner=RESTORE_ROLE)
    try:
        pg_restore_into(path, conninfo=admin, dbname=scratch, tools=tools, role=restorer)
        _refuse_busy(admin, live, force=force)
        ended = close_database(admin, live) if force else 0
        _swap(admin, live=live, restored=scratch)
    except BaseException:
        drop_database(admin, scratch)
        raise
    logger.info("restored %s over database %s", path, live)
    return RestoreResult(path, live, True, ended, round(time.monotonic() - started, 3))


def _refuse_busy(admin: str, live: str, *, force: bool) -> None:
    if force:
        return
    sessions = other_sessions(admin, live)
    if sessions:
        raise RestoreRefusedError(
            f"database {live} has {len(sessions)} active connection(s) ({', '.join(sessions[:5])}); "
            "stop the application first or pass --force to end them"
        )


def _swap(admin: str, *, live: str, restored: str) -> None:
    """Rename the live database aside, the restored one into its name, then drop the old one."""
    aside = f"{live[:40]}_old_{uuid.uuid4().hex[:8]}"
    with connect(admin) as conn:
        end_background_workers(conn, restored)  # TimescaleDB's scheduler; see backup/timescale.py
        end_background_workers(conn, live)
        try:
            conn.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(live), sql.Identifier(aside)
                )
            )
        except psycopg.Error as exc:
            _reopen(conn, live)
            raise RestoreRefusedError(
                f"cannot replace database {live}: {first_line(str(exc))}"
            ) from exc
        try:
            conn.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(restored), sql.Identifier(live)
                )
            )
        except psycopg.Error as exc:
            conn.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(aside), sql.Identifier(live)
                )
            )
            _reopen(conn, live)
            raise BackupError(
                f"cannot rename the restored database: {first_line(str(exc))}"
            ) from exc
        _reopen(conn, live)
    drop_database(admin, aside)
    start_background_workers(with_dbname(admin, live))


def _reopen(conn: psycopg.Connection[TupleRow], name: str) -> None:
    conn.execute(
        sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(name))
    )
