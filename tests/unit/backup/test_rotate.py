"""Rotation with an injected clock: per-kind limits, the age bound, the last verified backup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from klaviyo_analytics.backup.metadata import BackupInfo, list_backups, write_info
from klaviyo_analytics.backup.rotate import RetentionPolicy, rotate

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def make_backup(backup_dir: Path, kind: str, age: timedelta, *, verified: bool = False) -> Path:
    created = NOW - age
    folder = backup_dir / kind
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"db-{kind}-{created.strftime('%Y%m%dT%H%M%S%fZ')}.dump"
    path.write_bytes(b"PGDMP fake")
    write_info(
        BackupInfo(
            path=path,
            kind=kind,
            created_at=created,
            database="db",
            size_bytes=10,
            sha256="0" * 64,
            duration_s=0.1,
            server_version="18.6",
            server_major=18,
            tool_version="pg_dump (PostgreSQL) 18.6",
            tool_major=18,
            row_counts={"t": 1},
            verified=verified,
            verified_at=created if verified else None,
        )
    )
    return path


def names(infos: object) -> set[str]:
    return {i.path.name for i in infos}  # type: ignore[attr-defined]


def test_keeps_exactly_the_configured_number_per_kind_newest_first(tmp_path: Path) -> None:
    hourly = [make_backup(tmp_path, "hourly", timedelta(hours=h), verified=True) for h in range(30)]
    daily = [make_backup(tmp_path, "daily", timedelta(days=d, minutes=5)) for d in range(10)]
    weekly = [make_backup(tmp_path, "weekly", timedelta(weeks=w, minutes=7)) for w in range(3)]
    policy = RetentionPolicy(max_hourly=24, max_daily=7, max_weekly=4, max_monthly=12)

    result = rotate(tmp_path, policy=policy, clock=lambda: NOW)

    assert names(result.kept) == {p.name for p in hourly[:24] + daily[:7] + weekly}
    assert names(result.deleted) == {p.name for p in hourly[24:] + daily[7:]}
    assert result.protected is None
    assert {b.path for b in list_backups(tmp_path)} == set(hourly[:24] + daily[:7] + weekly)
    for gone in hourly[24:] + daily[7:]:
        assert not gone.exists() and not gone.with_name(gone.name + ".json").exists()


def test_retention_days_bounds_every_kind(tmp_path: Path) -> None:
    young = make_backup(tmp_path, "monthly", timedelta(days=20), verified=True)
    old = make_backup(tmp_path, "monthly", timedelta(days=40), verified=True)
    result = rotate(tmp_path, policy=RetentionPolicy(retention_days=30), clock=lambda: NOW)
    assert names(result.kept) == {young.name} and names(result.deleted) == {old.name}


def test_never_deletes_the_only_verified_backup(tmp_path: Path) -> None:
    verified = make_backup(tmp_path, "daily", timedelta(days=3), verified=True)
    newer = [make_backup(tmp_path, "daily", timedelta(days=d)) for d in (0, 1, 2)]
    ancient = make_backup(tmp_path, "weekly", timedelta(days=90), verified=True)
    result = rotate(
        tmp_path, policy=RetentionPolicy(max_daily=2, retention_days=30), clock=lambda: NOW
    )
    # The daily limit and the age bound would delete every verified backup: the newest stays.
    assert result.protected is not None and result.protected.path == verified
    assert verified.exists() and not ancient.exists()
    assert names(result.kept) == {verified.name, newer[0].name, newer[1].name}


def test_with_zero_allowed_the_only_verified_backup_still_survives(tmp_path: Path) -> None:
    only = make_backup(tmp_path, "hourly", timedelta(hours=1), verified=True)
    unverified = make_backup(tmp_path, "hourly", timedelta(minutes=1))
    result = rotate(tmp_path, policy=RetentionPolicy(max_hourly=0), clock=lambda: NOW)
    assert names(result.kept) == {only.name}
    assert not unverified.exists()


def test_dry_run_deletes_nothing_and_time_moves_with_the_clock(tmp_path: Path) -> None:
    paths = [make_backup(tmp_path, "daily", timedelta(days=d), verified=True) for d in (1, 5)]
    policy = RetentionPolicy(retention_days=7)
    assert rotate(tmp_path, policy=policy, clock=lambda: NOW).deleted == ()
    later = rotate(tmp_path, policy=policy, clock=lambda: NOW + timedelta(days=3), dry_run=True)
    assert names(later.deleted) == {paths[1].name}
    assert all(p.exists() for p in paths)
