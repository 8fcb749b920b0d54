"""Readiness checks: database, disk space, replication lag, sync and backup freshness.

Each check says `ok`, `warn` or `fail` with a detail. Only the required ones (the database and
the disk) make the service unready; stale syncs and backups are reported, not fatal.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from klaviyo_analytics.backup.metadata import latest_backup
from klaviyo_analytics.db.pool import Database
from klaviyo_analytics.db.repos.operations import last_success, replication
from klaviyo_analytics.errors import KlaviyoAnalyticsError

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    """The outcome of one readiness check."""

    name: str
    status: str
    required: bool
    detail: str


@dataclass(frozen=True)
class Readiness:
    """All checks, and whether every required one passed."""

    ready: bool
    checks: list[Check]


@dataclass(frozen=True)
class ReadinessLimits:
    """Thresholds of the checks."""

    min_free_disk_mb: int = 1024
    max_replica_lag_s: float = 300.0
    stale_sync_s: float = 86_400.0
    stale_backup_s: float = 172_800.0


async def check_database(db: Database) -> Check:
    """Check that a connection can be had and answers."""
    report = await db.health_check()
    if report.ok:
        return Check(
            "database", OK, True, f"PostgreSQL {report.server_version}, {report.latency_ms:.1f} ms"
        )
    return Check("database", FAIL, True, "; ".join(report.problems))


def check_disk(data_dir: Path, min_free_mb: int) -> Check:
    """Check the free space of the file system holding `data_dir` (or its nearest parent)."""
    where = data_dir.expanduser()
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        usage = shutil.disk_usage(where)
    except OSError as exc:
        return Check("disk", FAIL, True, f"cannot read the disk usage of {where}: {exc.strerror}")
    free_mb = usage.free / 1024 / 1024
    detail = f"{free_mb:,.0f} MiB free of {usage.total / 1024 / 1024:,.0f} MiB at {where}"
    if free_mb < min_free_mb:
        return Check("disk", FAIL, True, f"{detail}; at least {min_free_mb} MiB are needed")
    return Check("disk", OK, True, detail)


async def check_replication(db: Database, max_lag_s: float) -> Check:
    """Check replay lag on a standby, or the standbys' lag on a primary."""
    state = await db.run(replication, readonly=True)
    if state.in_recovery:
        if state.replay_lag_s is None:
            return Check("replication", WARN, False, "standby: nothing replayed yet")
        status = OK if state.replay_lag_s <= max_lag_s else WARN
        return Check("replication", status, False, f"standby, replay lag {state.replay_lag_s:.1f}s")
    if state.standbys == 0:
        return Check("replication", OK, False, "primary without standbys: not applicable")
    if state.max_standby_lag_s is None:
        return Check(
            "replication", OK, False, f"primary with {state.standbys} standby(s), lag not visible"
        )
    status = OK if state.max_standby_lag_s <= max_lag_s else WARN
    return Check(
        "replication",
        status,
        False,
        f"primary with {state.standbys} standby(s), worst replay lag {state.max_standby_lag_s:.1f}s",
    )


async def check_sync(db: Database, now: datetime, stale_s: float) -> Check:
    """Check the age of the last successful sync run."""
    at = await db.run(last_success, readonly=True)
    if at is None:
        return Check("sync", WARN, False, "no successful sync yet")
    age = (now - at).total_seconds()
    status = OK if age <= stale_s else WARN
    return Check("sync", status, False, f"last successful sync {age:,.0f}s ago ({at.isoformat()})")


async def check_backup(backup_dir: Path, now: datetime, stale_s: float) -> Check:
    """Check the age of the newest backup."""
    info = await asyncio.to_thread(latest_backup, backup_dir)
    if info is None:
        return Check("backup", WARN, False, f"no backup in {backup_dir}")
    age = info.age_s(now)
    status = OK if age <= stale_s else WARN
    return Check(
        "backup", status, False, f"newest backup {age:,.0f}s old ({info.kind}, {info.path.name})"
    )


async def _guarded(name: str, required: bool, check: Callable[[], Awaitable[Check]]) -> Check:
    try:
        return await check()
    except (KlaviyoAnalyticsError, OSError) as exc:
        return Check(name, FAIL if required else WARN, required, f"check failed: {exc}")


async def readiness(
    db: Database,
    *,
    data_dir: Path,
    backup_dir: Path,
    now: datetime,
    limits: ReadinessLimits,
) -> Readiness:
    """Run every check; the service is ready when every required check is not `fail`."""
    database = await _guarded("database", True, lambda: check_database(db))
    disk = await asyncio.to_thread(check_disk, data_dir, limits.min_free_disk_mb)
    checks = [database, disk]
    if database.status == OK:
        checks.append(
            await _guarded(
                "replication", False, lambda: check_replication(db, limits.max_replica_lag_s)
            )
        )
        checks.append(
            await _guarded("sync", False, lambda: check_sync(db, now, limits.stale_sync_s))
        )
    checks.append(
        await _guarded(
            "backup", False, lambda: check_backup(backup_dir, now, limits.stale_backup_s)
        )
    )
    return Readiness(ready=all(c.status != FAIL for c in checks if c.required), checks=checks)
