"""Point-in-time recovery: WAL archiving, base backups, and recovery into a new data directory.

Layout under BACKUP_DIR:
    wal/                    every completed WAL segment, copied there by the server's
                            archive_command
    base/<timestamp>/       a pg_basebackup in tar format (base.tar.gz, pg_wal.tar.gz) and
                            base.json (times, server version, user)

Recovery extracts the newest base backup finished before the target time into a fresh folder,
adds restore_command / recovery_target_time / recovery_target_action=promote and
recovery.signal, and starts a server there; it replays archived WAL up to the target and
promotes. It can only reach times whose WAL has been archived: a segment is archived when it is
full, after `archive_timeout`, or on `pg_switch_wal()` (see `archiving.switch_wal`).

A base backup of a TimescaleDB server records the extension's version and the preloaded
libraries: the recovered server preloads them too, and recovery refuses to start when that
TimescaleDB version is not installed for the recovery's PostgreSQL programs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pwd
import shlex
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from klaviyo_analytics.backup.archiving import (
    archiving_enabled,
    conf_quote,
    local_server_user,
    wal_dir_of,
)
from klaviyo_analytics.backup.errors import BackupError, RecoveryError
from klaviyo_analytics.backup.metadata import Clock, utc_now, write_json_atomic
from klaviyo_analytics.backup.tools import (
    PgTools,
    connect,
    find_tools,
    grant_server_access,
    run_tool,
    server_user,
    tail,
    tool_env,
)
from klaviyo_analytics.db.embedded import (
    IDENT_MAP,
    current_os_user,
    private_socket_dir,
    write_auth_files,
)
from klaviyo_analytics.db.pool import describe_target
from klaviyo_analytics.errors import DatabaseUnavailableError
from klaviyo_analytics.private import private_dir

logger = logging.getLogger(__name__)

BASE_META = "base.json"
RECOVERY_TIMEOUT_S = 300


@dataclass(frozen=True)
class BaseBackup:
    """One base backup under BACKUP_DIR/base/."""

    path: Path
    started_at: datetime
    finished_at: datetime
    server_version: str
    server_major: int
    user: str
    # The system user the server ran as, when it ran on this machine (see local_server_user).
    server_user: str | None = None
    # shared_preload_libraries of the server (None when our login may not read it).
    preload: str | None = None
    # The TimescaleDB version installed in the backed-up database, if any.
    timescaledb: str | None = None


@dataclass(frozen=True)
class RecoveredServer:
    """A server brought up on a recovered data directory."""

    data_dir: Path
    socket_dir: Path
    port: int
    user: str
    base: BaseBackup
    duration_s: float

    def conninfo(self, dbname: str = "postgres") -> str:
        """Return the connection string of database `dbname` on the recovered server."""
        return make_conninfo(
            host=str(self.socket_dir), port=str(self.port), user=self.user, dbname=dbname
        )


def take_base_backup(
    *, conninfo: str, backup_dir: Path, tools: PgTools | None = None, clock: Clock = utc_now
) -> BaseBackup:
    """Take a compressed tar-format base backup into `backup_dir/base/<timestamp>/`.

    Raises RecoveryError when the server does not archive WAL (a base backup alone cannot
    reach a later time), BackupError when pg_basebackup fails (nothing partial is left).
    """
    if not archiving_enabled(conninfo):
        raise RecoveryError(
            f"WAL archiving is off on {describe_target(conninfo)}; run `backup pitr setup` first"
        )
    with connect(conninfo) as conn:
        number = conn.info.server_version
        row = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
        timescaledb = str(row[0]) if row else None
        try:
            preload_row = conn.execute("SHOW shared_preload_libraries").fetchone()
            preload = str(preload_row[0]) if preload_row else None
        except psycopg.errors.InsufficientPrivilege:
            preload = None
    os_user = local_server_user(conninfo)
    major = number // 10000
    tools = tools or find_tools(min_major=major, prefer_major=major)
    started = clock()
    stamp = started.strftime("%Y%m%dT%H%M%S%fZ")
    final = backup_dir / "base" / stamp
    partial = final.with_name(f".{stamp}.partial")
    private_dir(partial.parent)
    try:
        run_tool(
            [
                tools.program("pg_basebackup"),
                "--no-password",
                f"--pgdata={partial}",
                "--format=tar",
                "--gzip",
                "--wal-method=stream",
                "--checkpoint=fast",
                f"--label=klaviyo-analytics {stamp}",
            ],
            env=tool_env(conninfo),
            what=f"base backup of {describe_target(conninfo)} into {final}",
        )
        finished = clock()
        user = str(conninfo_to_dict(conninfo).get("user") or os.environ.get("USER", "postgres"))
        base = BaseBackup(
            final,
            started,
            finished,
            f"{major}.{number % 10000}",
            major,
            user,
            server_user=os_user,
            preload=preload,
            timescaledb=timescaledb,
        )
        write_json_atomic(
            partial / BASE_META,
            {
                "started_at": started.isoformat(),
                "finished_at": finished.isoformat(),
                "server_version": base.server_version,
                "server_major": major,
                "user": user,
                "server_user": os_user,
                "preload": preload,
                "timescaledb": timescaledb,
            },
        )
        os.replace(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    logger.info("base backup written to %s", final)
    return base


def list_base_backups(backup_dir: Path) -> list[BaseBackup]:
    """Return the base backups under `backup_dir/base/`, newest first."""
    found = []
    for meta in (backup_dir / "base").glob(f"*/{BASE_META}"):
        try:
            raw = json.loads(meta.read_text())
            found.append(
                BaseBackup(
                    path=meta.parent,
                    started_at=datetime.fromisoformat(raw["started_at"]),
                    finished_at=datetime.fromisoformat(raw["finished_at"]),
                    server_version=raw["server_version"],
                    server_major=int(raw["server_major"]),
                    user=raw["user"],
                    server_user=raw.get("server_user"),
                    preload=raw.get("preload"),
                    timescaledb=raw.get("timescaledb"),
                )
            )
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("skipping base backup %s: %s", meta.parent, exc)
    return sorted(found, key=lambda b: b.finished_at, reverse=True)


def recover_to(
    *,
    backup_dir: Path,
    target_time: datetime,
    target_dir: Path,
    port: int | None = None,
    tools: PgTools | None = None,
) -> RecoveredServer:
    """Bring up a server in `target_dir` holding the database as it was at `target_time`.

    Without `port` the server listens on a Unix socket only (port 5432 in its own folder).
    When we are root it runs as the system user the live server ran as (it reads that server's
    WAL archive), else as the embedded server's. A TimescaleDB base backup gets TimescaleDB
    preloaded. Raises RecoveryError when `target_time` has no time zone, no base backup finished
    before it, `target_dir` is not empty, the base backup's TimescaleDB version is not installed
    for these PostgreSQL programs, or the server fails to reach the target (the log's tail says
    why; usually the WAL up to that time has not been archived).
    """
    started = time.monotonic()
    if target_time.tzinfo is None:
        raise RecoveryError(f"target time {target_time} needs a time zone, e.g. +00")
    bases = [b for b in list_base_backups(backup_dir) if b.finished_at <= target_time]
    if not bases:
        raise RecoveryError(
            f"no base backup in {backup_dir / 'base'} finished before {target_time.isoformat()}"
        )
    base = bases[0]
    if target_dir.exists() and any(target_dir.iterdir()):
        raise RecoveryError(f"target folder {target_dir} is not empty")
    tools = tools or find_tools(min_major=base.server_major, exact=True)
    tools.program("postgres")
    preload = base.preload
    if base.timescaledb is not None:
        _require_timescaledb(tools, base)
        if not preload or "timescaledb" not in preload:
            preload = ",".join(p for p in (preload, "timescaledb") if p)
    run_as = _recovery_user(base)
    target_dir = target_dir.resolve()
    _extract(base, target_dir)
    socket_dir = _socket_dir(target_dir, run_as)
    wal_dir = wal_dir_of(backup_dir).resolve()
    restore = f"cp {shlex.quote(f'{wal_dir}/%f')} %p"
    settings = {
        "restore_command": conf_quote(restore),
        "recovery_target_time": conf_quote(target_time.isoformat(sep=" ")),
        "recovery_target_action": "'promote'",
        # The copy must not archive into the live server's WAL folder.
        "archive_mode": "off",
        "port": str(port or 5432),
        "listen_addresses": "'localhost'" if port else "''",
        "unix_socket_directories": conf_quote(str(socket_dir)),
        "shared_buffers": "'128MB'",
    }
    if preload:
        # The live server's libraries (TimescaleDB's above all), even when it had them from its
        # command line rather than from the configuration copied with the base backup.
        settings["shared_preload_libraries"] = conf_quote(preload)
    with (target_dir / "postgresql.auto.conf").open("a") as fh:
        fh.write("# Point-in-time recovery, written by klaviyo-analytics.\n")
        fh.writelines(f"{k} = {v}\n" for k, v in settings.items())
    (target_dir / "recovery.signal").touch()
    # The copied pg_hba.conf may say trust; the recovered server admits peers (and passwords
    # over TCP when it listens on a port), like the embedded one.
    write_auth_files(target_dir, server_user=None, tcp=port is not None)
    if base.server_major < 16:
        # pg_ident.conf's `all` (any role) is PostgreSQL 16's: name the backup's role instead.
        with (target_dir / "pg_ident.conf").open("a") as fh:
            fh.write(f"{IDENT_MAP}   {current_os_user()}   {base.user}\n")
    target_dir.chmod(0o700)
    grant_server_access(target_dir, recursive=True, user=run_as)
    grant_server_access(wal_dir, user=run_as)
    log = target_dir / "recovery.log"
    try:
        run_tool(
            [
                tools.program("pg_ctl"),
                "-D",
                str(target_dir),
                "-w",
                "-t",
                "120",
                "-l",
                str(log),
                "start",
            ],
            env=tool_env(""),
            what=f"starting the recovered server in {target_dir}",
            user=run_as,
        )
    except BackupError as exc:
        raise RecoveryError(f"{exc}; server log: {_log_tail(log)}") from exc
    server = RecoveredServer(target_dir, socket_dir, port or 5432, base.user, base, 0.0)
    _wait_promoted(server, log)
    return RecoveredServer(
        target_dir, socket_dir, server.port, base.user, base, round(time.monotonic() - started, 3)
    )


def stop_server(data_dir: Path, *, tools: PgTools | None = None) -> None:
    """Stop the server running on `data_dir` (a fast, clean shutdown).

    Raises RecoveryError when no server runs there.
    """
    version_file = data_dir / "PG_VERSION"
    if not version_file.is_file():
        raise RecoveryError(f"{data_dir} is not a PostgreSQL data folder")
    major = int(version_file.read_text().strip())
    tools = tools or find_tools(min_major=major, exact=True)
    try:
        run_tool(
            [tools.program("pg_ctl"), "-D", str(data_dir), "-w", "-m", "fast", "stop"],
            env=tool_env(""),
            what=f"stopping the server in {data_dir}",
            user=_owner(data_dir) if server_user() is not None else None,
        )
    except BackupError as exc:
        raise RecoveryError(str(exc)) from exc


def _extract(base: BaseBackup, target_dir: Path) -> None:
    target_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(base.path / "base.tar.gz") as tar:
            tar.extractall(target_dir, filter="data")
        wal_tar = base.path / "pg_wal.tar.gz"
        if wal_tar.exists():
            with tarfile.open(wal_tar) as tar:
                tar.extractall(target_dir / "pg_wal", filter="data")
    except (OSError, tarfile.TarError) as exc:
        raise RecoveryError(f"cannot extract base backup {base.path}: {exc}") from exc
    # The live server may keep its socket (and the socket's lock file) in its data folder.
    leftovers = [target_dir / n for n in ("postmaster.pid", "postmaster.opts", "server.log")]
    for leftover in [*leftovers, *target_dir.glob(".s.PGSQL.*")]:
        leftover.unlink(missing_ok=True)


def _wait_promoted(server: RecoveredServer, log: Path) -> None:
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with connect(server.conninfo()) as conn:
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            if row is not None and row[0] is False:
                return
        except DatabaseUnavailableError as exc:
            if "authentication failed" in str(exc):
                raise RecoveryError(
                    f"the recovered server in {server.data_dir} refuses {server.user}: {exc}"
                ) from exc
            if not (server.data_dir / "postmaster.pid").exists():
                raise RecoveryError(
                    f"the recovered server in {server.data_dir} stopped: {_log_tail(log)}"
                ) from exc
        time.sleep(0.2)
    raise RecoveryError(f"recovery in {server.data_dir} did not finish: {_log_tail(log)}")


def _socket_dir(data_dir: Path, owner: str | None) -> Path:
    # Unix socket paths are limited to about 107 bytes.
    if len(str(data_dir / ".s.PGSQL.65535")) <= 100:
        return data_dir
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / f"klaviyo-analytics-pitr-{digest}"
    return private_socket_dir(folder, owner)


def _recovery_user(base: BaseBackup) -> str | None:
    """Return the system user to run the recovered server as (None: ourselves)."""
    default = server_user()
    if default is None or base.server_user is None:
        return default
    try:
        pwd.getpwnam(base.server_user)
    except KeyError:
        return default
    return base.server_user if base.server_user != "root" else default


def _owner(path: Path) -> str:
    return pwd.getpwuid(path.stat().st_uid).pw_name


def _require_timescaledb(tools: PgTools, base: BaseBackup) -> None:
    """Refuse a TimescaleDB base backup when these programs' server lacks its version."""
    try:
        lib = Path(
            run_tool(
                [tools.program("pg_config"), "--pkglibdir"],
                env=tool_env(""),
                what="asking pg_config where libraries are",
            ).strip()
        )
    except BackupError as exc:
        raise RecoveryError(str(exc)) from exc
    needed = [lib / "timescaledb.so", lib / f"timescaledb-{base.timescaledb}.so"]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise RecoveryError(
            f"base backup {base.path.name} holds a TimescaleDB {base.timescaledb} database: "
            f"install TimescaleDB {base.timescaledb} for PostgreSQL {base.server_major} where "
            f"the recovered server runs (missing: {', '.join(missing)})"
        )


def _log_tail(log: Path) -> str:
    try:
        return tail(log.read_text(errors="replace"), 6)
    except OSError:
        return "(no server log)"
