"""Check that a backup file is whole and restorable.

Three levels, each stricter: the SHA-256 and size recorded at creation; the archive's table of
contents (`pg_restore --list` must read it and name every table of the metadata); and, on
request, a trial restore into a scratch database whose row counts must equal the metadata's.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from klaviyo_analytics.backup.database import (
    RESTORE_ROLE,
    admin_conninfo,
    count_rows,
    create_database,
    drop_database,
    pg_restore_into,
    restore_role,
)
from klaviyo_analytics.backup.errors import BackupCorruptError, BackupError
from klaviyo_analytics.backup.metadata import (
    BackupInfo,
    Clock,
    mark_verified,
    read_info,
    read_unsigned_info,
    utc_now,
    write_info,
)
from klaviyo_analytics.backup.tools import (
    PgTools,
    connect,
    find_tools,
    run_tool,
    tool_env,
    with_dbname,
)

logger = logging.getLogger(__name__)

TOC_TABLE = re.compile(r"^\d+; \d+ \d+ TABLE (\S+) (\S+) ")
CHUNK = 1 << 20


@dataclass(frozen=True)
class VerifyReport:
    """What verification checked; it is only returned when every check passed."""

    info: BackupInfo
    tables_listed: int
    trial_restored: bool
    trial_counts: dict[str, int] | None = None


def sha256_of(path: Path) -> str:
    """Return the hex SHA-256 of the file at `path`."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def trust_backup(path: Path, *, key_file: Path) -> BackupInfo:
    """Sign the sidecar of a backup this machine did not sign (an older version's, another
    machine's) with the key in `key_file`, once the dump still has the checksum it records.

    A signed sidecar is what lets verify and restore trust a dump, so this is for backups whose
    origin the operator knows. The verification mark is cleared: verify it again.
    Raises BackupError when the sidecar is missing or unreadable, BackupCorruptError when the
    dump's checksum differs from its sidecar's.
    """
    info = read_unsigned_info(path)
    actual = sha256_of(path)
    if actual != info.sha256:
        raise BackupCorruptError(
            f"backup {path} does not match its metadata (sha256 {actual[:12]}…, recorded "
            f"{info.sha256[:12]}…): not signed"
        )
    trusted = replace(info, verified=False, verified_at=None, trial_restored=False)
    write_info(trusted, key_file=key_file)
    return trusted


def verify_backup(
    path: Path,
    *,
    trial_conninfo: str | None = None,
    tools: PgTools | None = None,
    clock: Clock = utc_now,
    record: bool = True,
    key_file: Path | None = None,
) -> VerifyReport:
    """Verify backup `path` and, with `record`, mark it verified in its sidecar.

    With `trial_conninfo` (any database of a server we may create databases on), restore the
    backup into a scratch database, compare every table's row count with the metadata, and drop
    the scratch database again, as a role that is no superuser (see `pg_restore_into`).
    `key_file` is the sidecar key to check the metadata with (by default the one of the backup
    folder `path` lies in).
    Raises BackupCorruptError naming the file and the check that failed; BackupError when the
    file or its metadata is missing; ToolNotFoundError when no pg_restore can read the archive.
    """
    if not path.is_file():
        raise BackupError(f"backup file {path} does not exist")
    info = read_info(path, key_file=key_file)
    check_checksum(info)
    tools = tools or find_tools(min_major=info.tool_major, prefer_major=info.tool_major)
    listed = list_tables(info, tools)
    trial_counts = None
    if trial_conninfo is not None:
        trial_counts = trial_restore(info, conninfo=trial_conninfo, tools=tools)
    if record:
        info = mark_verified(
            info, at=clock(), trial_restored=trial_counts is not None, key_file=key_file
        )
    logger.info("verified %s (%d tables)", path, len(listed))
    return VerifyReport(
        info=info,
        tables_listed=len(listed),
        trial_restored=trial_counts is not None,
        trial_counts=trial_counts,
    )


def check_checksum(info: BackupInfo) -> None:
    """Compare the file's size and SHA-256 with its metadata.

    Raises BackupCorruptError naming the file.
    """
    size = info.path.stat().st_size
    if size != info.size_bytes:
        raise BackupCorruptError(
            f"backup {info.path} is corrupted: it has {size} bytes, the metadata says "
            f"{info.size_bytes} (truncated or altered)"
        )
    actual = sha256_of(info.path)
    if actual != info.sha256:
        raise BackupCorruptError(
            f"backup {info.path} is corrupted: SHA-256 {actual[:16]}… differs from the "
            f"recorded {info.sha256[:16]}…"
        )


def list_tables(info: BackupInfo, tools: PgTools) -> set[str]:
    """Read the archive's table of contents and return its public tables.

    Raises BackupCorruptError when pg_restore cannot read it or a table of the metadata is
    missing from it.
    """
    try:
        out = run_tool(
            [tools.program("pg_restore"), "--list", str(info.path)],
            env=tool_env(""),
            what=f"reading the table of contents of {info.path}",
        )
    except BackupError as exc:
        raise BackupCorruptError(f"backup {info.path} is unreadable: {exc}") from exc
    tables = {
        m.group(2) for m in map(TOC_TABLE.match, out.splitlines()) if m and m.group(1) == "public"
    }
    missing = sorted(set(info.row_counts) - tables)
    if missing:
        raise BackupCorruptError(
            f"backup {info.path} is incomplete: its table of contents lacks {', '.join(missing)}"
        )
    return tables


def trial_restore(info: BackupInfo, *, conninfo: str, tools: PgTools) -> dict[str, int]:
    """Restore into a scratch database, compare row counts with the metadata, drop it.

    Raises BackupCorruptError naming the file and the tables whose counts differ.
    """
    admin = admin_conninfo(conninfo)
    scratch = f"ka_verify_{uuid.uuid4().hex[:12]}"
    restorer = restore_role(admin)
    create_database(admin, scratch, owner=RESTORE_ROLE)
    try:
        try:
            login = pg_restore_into(
                info.path, conninfo=admin, dbname=scratch, tools=tools, role=restorer
            )
        except BackupError as exc:
            raise BackupCorruptError(f"backup {info.path} failed its trial restore: {exc}") from exc
        with connect(with_dbname(login, scratch)) as conn:
            counts = count_rows(conn)
    finally:
        drop_database(admin, scratch)
    wrong = [
        f"{table}: {counts.get(table)} rows, expected {expected}"
        for table, expected in sorted(info.row_counts.items())
        if counts.get(table) != expected
    ]
    if wrong:
        raise BackupCorruptError(
            f"backup {info.path} restored with different row counts: {'; '.join(wrong)}"
        )
    return counts
