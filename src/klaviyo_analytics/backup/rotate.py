"""Delete old backups: a number kept per kind, an overall age bound, one verified copy always.

Rules, applied together:
- per kind, the newest MAX_<KIND>_BACKUPS are kept and older ones deleted;
- anything older than BACKUP_RETENTION_DAYS is deleted whatever its kind;
- the newest verified backup is never deleted, even when the rules above would delete it, so
  rotation can never leave the system without a backup known to be good.
Ages come from the sidecar's `created_at` and the injected clock, never from file times.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from klaviyo_analytics.backup.errors import BackupError
from klaviyo_analytics.backup.metadata import KINDS, BackupInfo, Clock, list_backups, utc_now

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionPolicy:
    """How many backups of each kind to keep, and the overall age bound."""

    max_hourly: int = 24
    max_daily: int = 7
    max_weekly: int = 4
    max_monthly: int = 12
    retention_days: int = 30

    def keep(self, kind: str) -> int:
        """Return how many backups of `kind` to keep."""
        limits: Mapping[str, int] = {
            "hourly": self.max_hourly,
            "daily": self.max_daily,
            "weekly": self.max_weekly,
            "monthly": self.max_monthly,
        }
        return limits[kind]


@dataclass(frozen=True)
class RotationResult:
    """What rotation kept and deleted (newest first)."""

    kept: tuple[BackupInfo, ...]
    deleted: tuple[BackupInfo, ...]
    protected: BackupInfo | None


def plan_rotation(
    backups: list[BackupInfo], policy: RetentionPolicy, *, clock: Clock = utc_now
) -> RotationResult:
    """Decide which backups rotation deletes, without touching any file."""
    now = clock()
    oldest_allowed = now - timedelta(days=policy.retention_days)
    doomed: set[Path] = set()
    for kind in KINDS:
        of_kind = sorted(
            (b for b in backups if b.kind == kind), key=lambda b: b.created_at, reverse=True
        )
        doomed.update(b.path for b in of_kind[policy.keep(kind) :])
    doomed.update(b.path for b in backups if b.created_at < oldest_allowed)
    protected = None
    verified = sorted((b for b in backups if b.verified), key=lambda b: b.created_at, reverse=True)
    if verified and all(b.path in doomed for b in verified):
        protected = verified[0]
        doomed.discard(protected.path)
    ordered = sorted(backups, key=lambda b: b.created_at, reverse=True)
    return RotationResult(
        kept=tuple(b for b in ordered if b.path not in doomed),
        deleted=tuple(b for b in ordered if b.path in doomed),
        protected=protected,
    )


def rotate(
    backup_dir: Path,
    *,
    policy: RetentionPolicy,
    clock: Clock = utc_now,
    dry_run: bool = False,
) -> RotationResult:
    """Delete the backups (file and sidecar) that the policy no longer keeps.

    Raises BackupError naming the file when one cannot be deleted.
    """
    result = plan_rotation(list_backups(backup_dir), policy, clock=clock)
    if result.protected is not None:
        logger.info("keeping %s: it is the only verified backup", result.protected.path)
    if dry_run:
        return result
    for info in result.deleted:
        try:
            info.path.unlink(missing_ok=True)
            info.sidecar.unlink(missing_ok=True)
        except OSError as exc:
            raise BackupError(
                f"cannot delete old backup {info.path}: {exc.strerror or exc}"
            ) from exc
        logger.info("deleted old backup %s", info.path)
    return result
