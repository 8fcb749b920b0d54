"""TimescaleDB's backup and restore procedure, for archives of databases that use it.

TimescaleDB documents a logical restore as: create the extension in the empty target, call
`timescaledb_pre_restore()` (which sets `timescaledb.restoring` so the extension's triggers
and catalog checks stand aside, and stops the database's background workers), run pg_restore,
then call `timescaledb_post_restore()`. Without it pg_restore fails as it adds the foreign keys
of a hypertable ("table is not a hypertable"). Its background scheduler also keeps a
connection to every database, which a rename must end first.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from klaviyo_analytics.backup.errors import BackupError
from klaviyo_analytics.backup.tools import (
    PgTools,
    connect,
    first_line,
    run_tool,
    tool_env,
    with_dbname,
)

logger = logging.getLogger(__name__)

TOC_EXTENSION = re.compile(r"^\d+; \d+ \d+ EXTENSION - timescaledb\b", re.MULTILINE)
WORKER_KIND = "TimescaleDB%"


def archive_uses_timescaledb(path: Path, tools: PgTools) -> bool:
    """Say whether archive `path` creates the timescaledb extension.

    Raises BackupError when pg_restore cannot read its table of contents.
    """
    out = run_tool(
        [tools.program("pg_restore"), "--list", str(path)],
        env=tool_env(""),
        what=f"reading the table of contents of {path}",
    )
    return TOC_EXTENSION.search(out) is not None


@contextmanager
def timescaledb_restore(conninfo: str, dbname: str) -> Iterator[None]:
    """Prepare database `dbname` for pg_restore of a TimescaleDB archive and finish it after.

    Raises BackupError naming the database when the server lacks TimescaleDB (it must be
    installed and preloaded, as on the source) or a step of the procedure fails.
    """
    target = with_dbname(conninfo, dbname)
    try:
        with connect(target) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            conn.execute("SELECT timescaledb_pre_restore()")
    except psycopg.Error as exc:
        raise BackupError(
            f"the backup uses TimescaleDB, which database {dbname} cannot load: "
            f"{first_line(str(exc))}"
        ) from exc
    yield
    try:
        with connect(target) as conn:
            conn.execute("SELECT timescaledb_post_restore()")
    except psycopg.Error as exc:
        raise BackupError(
            f"finishing the TimescaleDB restore of database {dbname} failed: {first_line(str(exc))}"
        ) from exc
    logger.info("TimescaleDB restore procedure completed in database %s", dbname)


def end_background_workers(conn: psycopg.Connection[TupleRow], name: str) -> None:
    """Keep TimescaleDB's scheduler out of database `name` and end the one connected to it.

    The database is closed to new connections (the launcher skips such databases), so a rename
    or drop is not refused with "being accessed by other users". A no-op without TimescaleDB.
    Raises BackupError when the workers do not end within 15 s.
    """
    conn.execute(
        sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name))
    )
    deadline = time.monotonic() + 15.0
    while True:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND backend_type LIKE %s",
            (name, WORKER_KIND),
        ).fetchall()
        if not rows:
            return
        if time.monotonic() > deadline:
            raise BackupError(f"TimescaleDB's workers on database {name} did not end within 15s")
        time.sleep(0.1)


def start_background_workers(conninfo: str) -> None:
    """Start TimescaleDB's scheduler for the database of `conninfo` if it uses TimescaleDB."""
    with connect(conninfo) as conn:
        row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        if row is not None:
            conn.execute("SELECT _timescaledb_functions.start_background_workers()")
