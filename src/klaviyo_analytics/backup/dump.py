"""Create a backup: a compressed pg_dump archive, a metadata sidecar, then verification.

The row counts and the dump come from one snapshot: a REPEATABLE READ transaction exports its
snapshot (`pg_export_snapshot`), counts every public table, and stays open while pg_dump reads
through `--snapshot`. The archive is written to a hidden temporary file in the target folder and
renamed into place only when complete, so a crash or a full disk never leaves a partial backup.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import IsolationLevel

from klaviyo_analytics.backup.database import count_rows
from klaviyo_analytics.backup.errors import BackupError, BackupWriteError
from klaviyo_analytics.backup.metadata import (
    DUMP_SUFFIX,
    BackupInfo,
    Clock,
    check_kind,
    record_outcome,
    utc_now,
    write_info,
)
from klaviyo_analytics.backup.tools import (
    PgTools,
    connect,
    find_tools,
    first_line,
    run_tool,
    tool_env,
)
from klaviyo_analytics.backup.verify import VerifyReport, sha256_of, verify_backup
from klaviyo_analytics.db.pool import describe_target
from klaviyo_analytics.private import private_dir, private_file

logger = logging.getLogger(__name__)

DISK_FULL_MARKERS = ("No space left on device", "File too large", "Disk quota exceeded")


@dataclass(frozen=True)
class BackupResult:
    """A finished backup and, when it ran, its verification."""

    info: BackupInfo
    verification: VerifyReport | None

    @property
    def path(self) -> Path:
        """Return the backup file's path."""
        return self.info.path


def create_backup(
    *,
    conninfo: str,
    backup_dir: Path,
    kind: str = "daily",
    tools: PgTools | None = None,
    clock: Clock = utc_now,
    verify: bool = True,
    trial_restore: bool = False,
) -> BackupResult:
    """Dump the database of `conninfo` into `backup_dir/<kind>/` and verify the result.

    `tools` defaults to the programs matching the server's version (refusing older ones);
    `clock` stamps the backup (tests pass a fake one). With `trial_restore`, verification also
    restores into a scratch database on the same server.
    Every outcome is counted in `backup_dir/status.json`.
    Raises BackupError for an unknown kind; BackupWriteError when the folder cannot be written
    or the disk fills (no partial file is left); ToolNotFoundError when only older pg_dump
    programs exist; DatabaseUnavailableError when the server cannot be reached;
    BackupCorruptError when the fresh backup fails verification.
    """
    check_kind(kind)
    started = time.monotonic()
    try:
        folder = _prepare_folder(backup_dir / kind)
        info = _dump(
            conninfo=conninfo, folder=folder, kind=kind, tools=tools, clock=clock, started=started
        )
        report = None
        if verify:
            report = verify_backup(
                info.path,
                trial_conninfo=conninfo if trial_restore else None,
                tools=tools,
                clock=clock,
            )
            info = report.info
    except Exception as exc:
        if backup_dir.is_dir():
            record_outcome(
                backup_dir,
                ok=False,
                at=clock(),
                duration_s=time.monotonic() - started,
                error=str(exc),
            )
        raise
    record_outcome(backup_dir, ok=True, at=clock(), duration_s=time.monotonic() - started)
    return BackupResult(info=info, verification=report)


def _prepare_folder(folder: Path) -> Path:
    try:
        private_dir(folder.parent)
        private_dir(folder)
    except OSError as exc:
        raise BackupWriteError(
            f"cannot create backup folder {folder}: {exc.strerror or exc}"
        ) from exc
    if not os.access(folder, os.W_OK):
        raise BackupWriteError(f"backup folder {folder} is not writable")
    return folder


def _dump(
    *,
    conninfo: str,
    folder: Path,
    kind: str,
    tools: PgTools | None,
    clock: Clock,
    started: float,
) -> BackupInfo:
    created_at = clock()
    with connect(conninfo, autocommit=False) as conn:
        number = conn.info.server_version
        major, version = number // 10000, f"{number // 10000}.{number % 10000}"
        database = conn.info.dbname
        tools = tools or find_tools(min_major=major, prefer_major=major)
        if tools.major < major:
            raise BackupError(
                f"pg_dump {tools.major} in {tools.bin_dir} is older than the PostgreSQL "
                f"{major} server of {describe_target(conninfo)}; install the {major} client tools"
            )
        name = f"{database}-{kind}-{created_at.strftime('%Y%m%dT%H%M%S%fZ')}{DUMP_SUFFIX}"
        final = folder / name
        partial = folder / f".{name}.partial"
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        try:
            with conn.transaction():
                row = conn.execute("SELECT pg_export_snapshot()").fetchone()
                assert row is not None
                snapshot = str(row[0])
                counts = count_rows(conn)
                logger.info("dumping %s to %s", describe_target(conninfo), final)
                _run_pg_dump(tools, conninfo=conninfo, snapshot=snapshot, out=partial, final=final)
        except psycopg.Error as exc:
            partial.unlink(missing_ok=True)
            raise BackupError(
                f"backup of {describe_target(conninfo)} failed: {first_line(str(exc))}"
            ) from exc
    try:
        private_file(partial)
        size = partial.stat().st_size
        digest = sha256_of(partial)
        _fsync(partial)
        os.replace(partial, final)
        _fsync(folder)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise BackupWriteError(f"cannot finish backup {final}: {exc.strerror or exc}") from exc
    info = BackupInfo(
        path=final,
        kind=kind,
        created_at=created_at,
        database=database,
        size_bytes=size,
        sha256=digest,
        duration_s=round(time.monotonic() - started, 3),
        server_version=version,
        server_major=major,
        tool_version=tools.version,
        tool_major=tools.major,
        row_counts=counts,
    )
    try:
        write_info(info)
    except BackupWriteError:
        final.unlink(missing_ok=True)  # a backup without metadata cannot be verified
        raise
    logger.info("backup %s written: %d bytes, %d tables", final, size, len(counts))
    return info


def _run_pg_dump(tools: PgTools, *, conninfo: str, snapshot: str, out: Path, final: Path) -> None:
    args = [
        tools.program("pg_dump"),
        "--format=custom",
        "--no-password",
        "--lock-wait-timeout=60000",
        f"--snapshot={snapshot}",
        f"--file={out}",
    ]
    try:
        run_tool(args, env=tool_env(conninfo), what=f"writing backup {final}")
    except BackupError as exc:
        out.unlink(missing_ok=True)
        if any(marker in str(exc) for marker in DISK_FULL_MARKERS):
            raise BackupWriteError(
                f"no space left in {out.parent} while writing backup {final.name}; "
                f"the partial file was removed ({os.strerror(errno.ENOSPC)})"
            ) from exc
        raise


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
