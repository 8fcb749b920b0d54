"""Tool discovery by version, the tools' environment, sidecars and counters, PITR settings."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from klaviyo_analytics.backup import archiving
from klaviyo_analytics.backup.errors import BackupError, ToolNotFoundError
from klaviyo_analytics.backup.metadata import (
    backup_stats,
    check_kind,
    latest_backup,
    read_info,
    record_outcome,
)
from klaviyo_analytics.backup.tools import find_tools, tool_env

AT = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def fake_bin(root: Path, major: int) -> Path:
    folder = root / f"pg{major}" / "bin"
    folder.mkdir(parents=True)
    script = folder / "pg_dump"
    script.write_text(f"#!/bin/sh\necho 'pg_dump (PostgreSQL) {major}.3'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


def test_prefers_the_server_matching_major_then_the_lowest_newer_one(tmp_path: Path) -> None:
    dirs = [fake_bin(tmp_path, 18), fake_bin(tmp_path, 15), fake_bin(tmp_path, 16)]
    assert find_tools(min_major=15, prefer_major=15, bin_dirs=dirs).major == 15
    assert find_tools(min_major=14, prefer_major=14, bin_dirs=dirs).major == 15
    assert find_tools(min_major=17, bin_dirs=dirs).major == 18
    assert find_tools(min_major=16, exact=True, bin_dirs=dirs).bin_dir == dirs[2]


def test_only_older_pg_dump_is_refused_with_what_was_found(tmp_path: Path) -> None:
    dirs = [fake_bin(tmp_path, 15), tmp_path / "empty"]
    with pytest.raises(ToolNotFoundError, match=r"version 18 or newer.*\(v15\)"):
        find_tools(min_major=18, bin_dirs=dirs)


def test_password_goes_to_the_environment_and_stray_pg_variables_are_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PGPASSWORD", "stale")
    monkeypatch.setenv("PGSERVICE", "elsewhere")
    env = tool_env("postgresql://shop:s3cret@db.internal:6543/sales?sslmode=require")
    assert env["PGPASSWORD"] == "s3cret" and env["PGHOST"] == "db.internal"
    assert (env["PGPORT"], env["PGUSER"], env["PGDATABASE"]) == ("6543", "shop", "sales")
    assert env["PGSSLMODE"] == "require" and "PGSERVICE" not in env
    assert tool_env("host=/run/pg dbname=a", dbname="b")["PGDATABASE"] == "b"


def test_kinds_are_checked() -> None:
    assert check_kind("weekly") == "weekly"
    with pytest.raises(BackupError, match="expected one of hourly, daily, weekly, monthly"):
        check_kind("Daily")


def test_missing_or_broken_sidecar_names_the_file(tmp_path: Path) -> None:
    dump = tmp_path / "x.dump"
    dump.write_bytes(b"")
    with pytest.raises(BackupError, match=r"no metadata file .*x\.dump\.json"):
        read_info(dump)
    (tmp_path / "x.dump.json").write_text("{not json")
    with pytest.raises(BackupError, match="unreadable"):
        read_info(dump)
    assert latest_backup(tmp_path) is None


def test_counters_accumulate_in_the_status_file(tmp_path: Path) -> None:
    assert backup_stats(tmp_path).successes == 0
    record_outcome(tmp_path, ok=True, at=AT, duration_s=1.5)
    record_outcome(tmp_path, ok=False, at=AT, duration_s=0.2, error="disk full")
    record_outcome(tmp_path, ok=True, at=AT, duration_s=2.25)
    stats = backup_stats(tmp_path)
    assert (stats.successes, stats.failures) == (2, 1)
    assert stats.last_duration_s == 2.25 and stats.last_error == "disk full"
    assert stats.last_success_at == AT == stats.last_failure_at


def test_archive_command_quotes_paths_and_never_overwrites(tmp_path: Path) -> None:
    settings = archiving.archive_settings(Path("/srv/it's backups/wal"))
    assert settings["archive_mode"] == "on"
    command = settings["archive_command"]
    assert command.startswith("'test ! -f ") and "''" in command  # config-quoted quote
    assert "mv " in command and "%p" in command
    assert "ALTER SYSTEM SET archive_mode = on;" in archiving.external_setup_instructions(tmp_path)
