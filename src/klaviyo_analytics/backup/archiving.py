"""WAL archiving for point-in-time recovery: turn it on, check that it reaches BACKUP_DIR/wal/.

The embedded server gets an include file in its data directory and is restarted here. A server
we do not run (DATABASE_URL, DB_HOST) is set with ALTER SYSTEM when our login may do that, and
its administrator restarts it (archive_mode is read at start only); otherwise we print what
the administrator must run. Either way the archive command runs as the server's system user, on
the server's machine: when that machine is this one and we are root, the WAL folder is handed to
the owner of the server's data directory; otherwise making it writable is the administrator's
part.
"""

from __future__ import annotations

import logging
import os
import pwd
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from klaviyo_analytics.backup.errors import RecoveryError
from klaviyo_analytics.backup.tools import connect, grant_server_access
from klaviyo_analytics.db.embedded import EmbeddedPostgres
from klaviyo_analytics.db.pool import describe_target
from klaviyo_analytics.errors import DatabaseUnavailableError
from klaviyo_analytics.private import private_dir

logger = logging.getLogger(__name__)

ARCHIVE_CONF = "klaviyo_analytics_archive.conf"
ARCHIVE_TIMEOUT = "300s"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True)
class ArchivingSetup:
    """What `enable_server_archiving` did to a server we do not run."""

    changed: bool  # ALTER SYSTEM was run
    restart_needed: bool  # archive_mode (or wal_level) waits for the server's next start
    server_user: str | None  # the system user the WAL folder was handed to, when known


def wal_dir_of(backup_dir: Path) -> Path:
    """Return the WAL archive folder under `backup_dir`."""
    return backup_dir / "wal"


def archive_command(wal_dir: Path) -> str:
    """Return the shell command that archives one segment into `wal_dir`.

    The copy goes through a temporary name and never overwrites a segment already archived.
    """
    target = shlex.quote(f"{wal_dir}/%f")
    partial = shlex.quote(f"{wal_dir}/.%f.partial")
    return f"test ! -f {target} && cp %p {partial} && mv {partial} {target}"


def archive_settings(wal_dir: Path) -> dict[str, str]:
    """Return the server settings that archive every WAL segment into `wal_dir`, as they are
    written in a configuration file (values quoted)."""
    return {
        "archive_mode": "on",
        "archive_command": conf_quote(archive_command(wal_dir)),
        "archive_timeout": conf_quote(ARCHIVE_TIMEOUT),
    }


def external_setup_instructions(wal_dir: Path) -> str:
    """Return what an administrator must do to enable archiving on a server we do not run."""
    settings = archive_settings(wal_dir)
    lines = [f"ALTER SYSTEM SET {k} = {v};" for k, v in settings.items()]
    return (
        "WAL archiving is off on this server. As a superuser run:\n  "
        + "\n  ".join(lines)
        + f"\nthen restart the server (archive_mode needs a restart). {wal_dir} must be writable "
        "by the server's system user, on the server's machine. pg_basebackup needs a role with "
        "REPLICATION (ALTER ROLE <user> REPLICATION) and a `replication` line in pg_hba.conf."
    )


def archiving_enabled(conninfo: str) -> bool:
    """Say whether the server of `conninfo` archives WAL (archive_mode on, a command set)."""
    with connect(conninfo) as conn:
        mode = conn.execute("SHOW archive_mode").fetchone()
        command = conn.execute("SHOW archive_command").fetchone()
    return bool(
        mode and mode[0] in ("on", "always") and command and command[0] not in ("", "(disabled)")
    )


def enable_embedded_archiving(server: EmbeddedPostgres, wal_dir: Path) -> bool:
    """Make the running embedded `server` archive WAL into `wal_dir`; return whether it restarted.

    The settings go into an include file of the data directory, so they survive later starts
    that know nothing of backups. archive_mode needs a restart, done here when it was off.
    """
    private_dir(wal_dir)
    grant_server_access(wal_dir)
    conf = server.data_dir / ARCHIVE_CONF
    lines = [f"{k} = {v}\n" for k, v in archive_settings(wal_dir).items()]
    conf.write_text("# Written by `klaviyo-analytics backup pitr setup`.\n" + "".join(lines))
    main = server.data_dir / "postgresql.conf"
    include = f"include_if_exists = '{ARCHIVE_CONF}'\n"
    if include not in main.read_text():
        with main.open("a") as fh:
            fh.write("\n" + include)
    if archiving_enabled(server.conninfo()):
        with connect(server.conninfo()) as conn:
            conn.execute("SELECT pg_reload_conf()")
        return False
    logger.info("restarting embedded PostgreSQL in %s to turn on WAL archiving", server.data_dir)
    server.restart()
    return True


def local_server_user(conninfo: str) -> str | None:
    """Return the system user a server on this machine runs as, or None when we cannot tell.

    Known only when we connect to it locally (a socket, localhost), its data directory is a
    folder here whose postmaster.pid names the server's port, and we may read that file (root
    or the owner): the owner of that folder is the server's user.
    """
    params = conninfo_to_dict(conninfo)
    host = str(params.get("hostaddr") or params.get("host") or "")
    if host and not host.startswith("/") and host not in LOCAL_HOSTS:
        return None
    try:
        with connect(conninfo) as conn:
            row = conn.execute(
                "SELECT current_setting('data_directory', true), current_setting('port')"
            ).fetchone()
    except (DatabaseUnavailableError, psycopg.Error):
        return None  # a guess at most: the caller falls back to the administrator
    if row is None or not row[0]:
        return None
    data_dir, port = Path(str(row[0])), str(row[1])
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        owner = pwd.getpwuid(data_dir.stat().st_uid).pw_name
    except (OSError, KeyError):
        return None
    return owner if len(lines) > 3 and lines[3].strip() == port else None


def enable_server_archiving(conninfo: str, wal_dir: Path) -> ArchivingSetup:
    """Set a server we do not run to archive WAL into `wal_dir` (ALTER SYSTEM), when allowed.

    Returns whether anything changed and whether the server must be restarted for it (we never
    restart a server we do not run). When the server runs on this machine and we are root, the
    WAL folder is handed to its system user. Raises RecoveryError with the administrator's
    instructions when our login may not change the settings, and when archiving is on already
    but with a command of someone else's (which we do not override).
    """
    private_dir(wal_dir)
    user = local_server_user(conninfo) if os.geteuid() == 0 else None
    if user is not None:
        grant_server_access(wal_dir, user=user)
    wanted = {
        "archive_mode": "on",
        "archive_command": archive_command(wal_dir),
        "archive_timeout": ARCHIVE_TIMEOUT,
    }
    with connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
            (["archive_mode", "archive_command", "wal_level"],),
        ).fetchall()
        current: dict[str, str] = {str(name): str(value) for name, value in rows}
        archiving = current.get("archive_mode") in ("on", "always")
        command = current.get("archive_command")
        if archiving and command == wanted["archive_command"]:
            return ArchivingSetup(changed=False, restart_needed=False, server_user=user)
        if archiving and command not in ("", "(disabled)"):
            raise RecoveryError(
                f"{describe_target(conninfo)} archives WAL with a command of its own "
                f"({command!r}), not into {wal_dir}; as a superuser run:\n  "
                f"ALTER SYSTEM SET archive_command = {archive_settings(wal_dir)['archive_command']};"
                "\n  SELECT pg_reload_conf();"
            )
        if conn.info.server_version >= 150000:
            allowed = conn.execute(
                "SELECT bool_and(has_parameter_privilege(p, 'ALTER SYSTEM'))"
                " FROM unnest(%s::text[]) AS p",
                (["archive_mode", "archive_command", "archive_timeout", "wal_level"],),
            ).fetchone()
        else:
            allowed = conn.execute("SELECT current_setting('is_superuser') = 'on'").fetchone()
        if not (allowed and allowed[0]):
            raise RecoveryError(external_setup_instructions(wal_dir))
        if current.get("wal_level") == "minimal":
            wanted["wal_level"] = "replica"
        for name, value in wanted.items():
            conn.execute(
                sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value))
            )
        conn.execute("SELECT pg_reload_conf()")
    # archive_mode and wal_level are read when the server starts, and only then.
    restart = not archiving or "wal_level" in wanted
    logger.info("WAL archiving into %s set on %s", wal_dir, describe_target(conninfo))
    return ArchivingSetup(changed=True, restart_needed=restart, server_user=user)


def check_archive(conninfo: str, wal_dir: Path, *, timeout_s: float = 30.0) -> str:
    """Archive the current WAL segment and make sure it arrived in `wal_dir`; return its name.

    Raises RecoveryError when it did not (the server archives elsewhere, or cannot write there).
    """
    segment = switch_wal(conninfo, timeout_s=timeout_s)
    if not (wal_dir / segment).is_file():
        raise RecoveryError(
            f"{describe_target(conninfo)} archived WAL segment {segment}, but not into "
            f"{wal_dir}; its archive_command must copy segments there"
        )
    return segment


def switch_wal(conninfo: str, *, timeout_s: float = 30.0) -> str:
    """Close the current WAL segment and wait until the server has archived it; return its name.

    Raises RecoveryError when archiving does not catch up within `timeout_s` (see
    pg_stat_archiver's last_failed_wal on the server).
    """
    with connect(conninfo) as conn:
        row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
        assert row is not None
        segment = str(row[0])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = conn.execute(
                "SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver"
            ).fetchone()
            if done is not None and done[0] is not None and str(done[0]) >= segment:
                return segment
            time.sleep(0.1)
    raise RecoveryError(
        f"WAL segment {segment} of {describe_target(conninfo)} was not archived within "
        f"{timeout_s:g}s (last failed: {done[1] if done else 'unknown'})"
    )


def conf_quote(value: str) -> str:
    """Quote `value` for postgresql.conf."""
    return "'" + value.replace("'", "''") + "'"
