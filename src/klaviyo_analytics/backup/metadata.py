"""The sidecar JSON beside every backup file, listings, and the success/failure counters.

A backup `X.dump` is described by `X.dump.json`: checksum, size, duration, versions, the
database, exact row counts per table, when and of which kind it was made, whether it has been
verified. The counters the scheduler and /metrics read live in `BACKUP_DIR/status.json`; nothing
is kept in memory between calls.

Every sidecar carries an HMAC-SHA256 made with a key of this machine (`BACKUP_DIR/.sidecar.key`,
0600, created with the first backup). A sidecar that was edited, or written anywhere else,
fails the check and its backup is refused: the checksum it records is what vouches for the
dump, so a forged sidecar would otherwise vouch for a crafted dump.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from klaviyo_analytics.backup.errors import BackupError, BackupWriteError
from klaviyo_analytics.private import FILE_MODE

logger = logging.getLogger(__name__)

KINDS = ("hourly", "daily", "weekly", "monthly")
DUMP_SUFFIX = ".dump"
SIDECAR_SUFFIX = ".json"
STATUS_FILE = "status.json"
METADATA_VERSION = 2
KEY_FILE = ".sidecar.key"
KEY_BYTES = 32

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """Return the current time in UTC (the default clock)."""
    return datetime.now(UTC)


def check_kind(kind: str) -> str:
    """Return `kind` if it is one of KINDS.

    Raises BackupError listing the accepted kinds.
    """
    if kind not in KINDS:
        raise BackupError(f"unknown backup kind {kind!r}: expected one of {', '.join(KINDS)}")
    return kind


@dataclass(frozen=True)
class BackupInfo:
    """What is known about one backup file, as stored in its sidecar."""

    path: Path
    kind: str
    created_at: datetime
    database: str
    size_bytes: int
    sha256: str
    duration_s: float
    server_version: str
    server_major: int
    tool_version: str
    tool_major: int
    row_counts: Mapping[str, int] = field(default_factory=dict)
    verified: bool = False
    verified_at: datetime | None = None
    trial_restored: bool = False

    @property
    def sidecar(self) -> Path:
        """Return the path of the metadata file beside the backup."""
        return sidecar_path(self.path)

    def age_s(self, now: datetime) -> float:
        """Return how many seconds old the backup is at `now`."""
        return (now - self.created_at).total_seconds()


@dataclass(frozen=True)
class BackupStats:
    """Counters of backup runs, for the scheduler, /health/ready and /metrics."""

    successes: int = 0
    failures: int = 0
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    last_duration_s: float | None = None
    last_error: str | None = None


def sidecar_path(path: Path) -> Path:
    """Return the metadata file that belongs to backup `path`."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


def default_key_file(path: Path) -> Path:
    """Return the key file of the backup folder that backup `path` sits in (`<dir>/<kind>/`)."""
    return path.parent.parent / KEY_FILE


def load_key(key_file: Path, *, create: bool = False) -> bytes:
    """Return the sidecar key in `key_file`, creating it (0600) when `create` allows.

    Raises BackupError when it is missing (and not to be created), unreadable, or open to
    other users.
    """
    if create and not key_file.exists():
        try:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(KEY_BYTES))
        except FileExistsError:
            pass  # another backup created it a moment ago
        except OSError as exc:
            raise BackupWriteError(f"cannot create key {key_file}: {exc.strerror or exc}") from exc
    try:
        info = key_file.stat()
        key = key_file.read_bytes()
    except FileNotFoundError:
        raise BackupError(
            f"no sidecar key {key_file}: backups are only trusted where they were made"
        ) from None
    except OSError as exc:
        raise BackupError(f"cannot read sidecar key {key_file}: {exc.strerror or exc}") from exc
    if info.st_mode & 0o077 or len(key) < KEY_BYTES:
        raise BackupError(f"sidecar key {key_file} is open to other users or too short")
    return key


def _signature(data: Mapping[str, Any], key: bytes) -> str:
    body = json.dumps({k: v for k, v in data.items() if k != "hmac"}, sort_keys=True)
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def read_info(path: Path, *, key_file: Path | None = None) -> BackupInfo:
    """Read the sidecar of backup `path` and check its HMAC with the key in `key_file`.

    `key_file` defaults to the key of the backup folder `path` lies in; pass the configured
    one (BACKUP_DIR's) for a file from elsewhere.
    Raises BackupError naming the file when the sidecar is missing, unreadable, unsigned or
    its signature does not match (edited or forged).
    """
    raw = _sidecar(path)
    key = load_key(key_file or default_key_file(path))
    signature = raw.get("hmac")
    if not isinstance(signature, str) or not hmac.compare_digest(signature, _signature(raw, key)):
        raise BackupError(
            f"metadata file {sidecar_path(path)} is not authentic (edited, forged, or made by "
            "another machine or an older version): its backup is refused; if you know where it "
            f"came from, `klaviyo-analytics backup trust {path.name}` signs it"
        )
    return _info(path, raw)


def read_unsigned_info(path: Path) -> BackupInfo:
    """Read the sidecar of backup `path` without checking its signature (to sign it anew).

    Raises BackupError naming the file when the sidecar is missing or unreadable.
    """
    return _info(path, _sidecar(path))


def _sidecar(path: Path) -> dict[str, Any]:
    side = sidecar_path(path)
    try:
        raw = json.loads(side.read_text())
    except FileNotFoundError:
        raise BackupError(f"no metadata file {side} beside backup {path}") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"metadata file {side} is unreadable: {exc}") from exc
    if not isinstance(raw, dict):
        raise BackupError(f"metadata file {side} is unreadable: not a JSON object")
    return raw


def _info(path: Path, raw: dict[str, Any]) -> BackupInfo:
    side = sidecar_path(path)
    try:
        return BackupInfo(
            path=path,
            kind=raw["kind"],
            created_at=datetime.fromisoformat(raw["created_at"]),
            database=raw["database"],
            size_bytes=int(raw["size_bytes"]),
            sha256=raw["sha256"],
            duration_s=float(raw["duration_s"]),
            server_version=raw["server_version"],
            server_major=int(raw["server_major"]),
            tool_version=raw["tool_version"],
            tool_major=int(raw["tool_major"]),
            row_counts={str(k): int(v) for k, v in raw["row_counts"].items()},
            verified=bool(raw.get("verified", False)),
            verified_at=(
                datetime.fromisoformat(raw["verified_at"]) if raw.get("verified_at") else None
            ),
            trial_restored=bool(raw.get("trial_restored", False)),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BackupError(f"metadata file {side} is unreadable: {exc}") from exc


def write_info(info: BackupInfo, *, key_file: Path | None = None) -> None:
    """Write the sidecar of `info` atomically (temporary file, then rename), signed.

    The key (`key_file`, by default the backup folder's) is created on first use.
    Raises BackupWriteError naming the file; no partial sidecar is left behind.
    """
    data: dict[str, Any] = asdict(info)
    data.pop("path")
    data["file"] = info.path.name
    data["metadata_version"] = METADATA_VERSION
    data["created_at"] = info.created_at.isoformat()
    data["verified_at"] = info.verified_at.isoformat() if info.verified_at else None
    data["row_counts"] = dict(info.row_counts)
    data["hmac"] = _signature(data, load_key(key_file or default_key_file(info.path), create=True))
    write_json_atomic(info.sidecar, data)


def mark_verified(
    info: BackupInfo, *, at: datetime, trial_restored: bool, key_file: Path | None = None
) -> BackupInfo:
    """Record in the sidecar that `info` passed verification, and return the new record."""
    updated = replace(
        info, verified=True, verified_at=at, trial_restored=info.trial_restored or trial_restored
    )
    write_info(updated, key_file=key_file)
    return updated


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write `data` as JSON to `path` through a temporary file and a rename.

    Raises BackupWriteError naming `path`.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.unlink(missing_ok=True)  # a leftover may have a wider mode
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise BackupWriteError(f"cannot write {path}: {exc.strerror or exc}") from exc


def list_backups(backup_dir: Path, *, kind: str | None = None) -> list[BackupInfo]:
    """Return every backup under `backup_dir` that has a readable sidecar, newest first.

    A sidecar that cannot be read is logged and skipped, so one bad file never hides the rest.
    """
    kinds = (check_kind(kind),) if kind else KINDS
    found: list[BackupInfo] = []
    for k in kinds:
        folder = backup_dir / k
        if not folder.is_dir():
            continue
        for dump in folder.glob(f"*{DUMP_SUFFIX}"):
            try:
                found.append(read_info(dump))
            except BackupError as exc:
                logger.warning("skipping %s: %s", dump, exc)
    return sorted(found, key=lambda i: i.created_at, reverse=True)


def latest_backup(backup_dir: Path, *, verified_only: bool = False) -> BackupInfo | None:
    """Return the newest backup (or newest verified one), or None when there is none."""
    for info in list_backups(backup_dir):
        if info.verified or not verified_only:
            return info
    return None


def backup_stats(backup_dir: Path) -> BackupStats:
    """Return the run counters kept in `BACKUP_DIR/status.json` (zeros when absent)."""
    path = backup_dir / STATUS_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return BackupStats()
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable %s: %s", path, exc)
        return BackupStats()

    def when(key: str) -> datetime | None:
        value = raw.get(key)
        return datetime.fromisoformat(value) if value else None

    return BackupStats(
        successes=int(raw.get("successes", 0)),
        failures=int(raw.get("failures", 0)),
        last_success_at=when("last_success_at"),
        last_failure_at=when("last_failure_at"),
        last_duration_s=raw.get("last_duration_s"),
        last_error=raw.get("last_error"),
    )


def record_outcome(
    backup_dir: Path, *, ok: bool, at: datetime, duration_s: float, error: str | None = None
) -> None:
    """Add one run to the counters in `BACKUP_DIR/status.json`.

    Best effort: a full disk must not hide the backup's own error, so a failure to write the
    counters is logged, not raised.
    """
    try:
        with _locked(backup_dir):
            stats = backup_stats(backup_dir)
            if ok:
                stats = replace(
                    stats,
                    successes=stats.successes + 1,
                    last_success_at=at,
                    last_duration_s=round(duration_s, 3),
                )
            else:
                stats = replace(
                    stats, failures=stats.failures + 1, last_failure_at=at, last_error=error
                )
            data = asdict(stats)
            for key in ("last_success_at", "last_failure_at"):
                data[key] = data[key].isoformat() if data[key] else None
            write_json_atomic(backup_dir / STATUS_FILE, data)
    except (OSError, BackupWriteError) as exc:
        logger.warning("could not update backup counters in %s: %s", backup_dir, exc)


@contextmanager
def _locked(backup_dir: Path) -> Iterator[None]:
    # The scheduler and a CLI run may finish at the same moment; serialise the counter update.
    fd = os.open(backup_dir / ".status.lock", os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    with os.fdopen(fd, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
