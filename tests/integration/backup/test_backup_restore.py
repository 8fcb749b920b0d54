"""Backups against a real server: roundtrip, corruption, sessions, versions, a full disk."""

from __future__ import annotations

import dataclasses
import subprocess
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from klaviyo_analytics.backup.dump import create_backup
from klaviyo_analytics.backup.errors import (
    BackupCorruptError,
    BackupError,
    BackupWriteError,
    RestoreRefusedError,
)
from klaviyo_analytics.backup.metadata import (
    backup_stats,
    latest_backup,
    list_backups,
    read_info,
    write_info,
)
from klaviyo_analytics.backup.restore import restore_backup
from klaviyo_analytics.backup.verify import verify_backup
from tests.fixtures.database import PgServer
from tests.integration.backup.helpers import SEEDED_TABLES, fingerprints, seed


@pytest.fixture
def seeded(db_conninfo: str) -> str:
    seed(db_conninfo)
    return db_conninfo


def test_roundtrip_restores_every_table_identically_into_a_new_database(
    pg_server: PgServer, seeded: str, tmp_path: Path
) -> None:
    before = fingerprints(seeded)
    assert all(before[t][0] > 0 for t in SEEDED_TABLES)

    result = create_backup(conninfo=seeded, backup_dir=tmp_path, kind="daily", trial_restore=True)

    info = read_info(result.path)
    assert result.path.parent == tmp_path / "daily"
    assert info.verified and info.trial_restored
    assert info.row_counts["klaviyo_events"] == 2000
    assert {t: c for t, (c, _) in before.items()} == dict(info.row_counts)
    assert info.size_bytes == result.path.stat().st_size > 0
    assert not list((tmp_path / "daily").glob(".*"))  # no temporary files left

    new_db = f"ka_restored_{uuid.uuid4().hex[:8]}"
    try:
        restored = restore_backup(result.path, conninfo=seeded, new_db=new_db)
        assert restored.database == new_db and not restored.replaced_live
        assert fingerprints(pg_server.conninfo(new_db)) == before
    finally:
        pg_server.drop_database(new_db)
    assert fingerprints(seeded) == before  # the live database is untouched

    latest = latest_backup(tmp_path)
    assert latest is not None and latest.path == result.path and latest.verified
    stats = backup_stats(tmp_path)
    assert stats.successes == 1 and stats.failures == 0 and stats.last_duration_s is not None


def test_trial_restore_compares_with_counts_taken_at_dump_time_not_live_ones(
    seeded: str, tmp_path: Path
) -> None:
    result = create_backup(conninfo=seeded, backup_dir=tmp_path, kind="hourly", verify=False)
    with psycopg.connect(seeded, autocommit=True) as conn:
        conn.execute("DELETE FROM sync_state")
    # The live table changed after the dump; the trial restore must still match the metadata.
    report = verify_backup(result.path, trial_conninfo=seeded)
    assert report.trial_counts is not None and report.trial_counts["sync_state"] == 2


@pytest.mark.parametrize("damage", ["truncate", "flip_byte"])
def test_damaged_backup_is_detected_by_verify_and_refused_by_restore(
    seeded: str, tmp_path: Path, damage: str
) -> None:
    result = create_backup(conninfo=seeded, backup_dir=tmp_path, kind="daily")
    data = bytearray(result.path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0x01
    result.path.write_bytes(bytes(data))

    with pytest.raises(BackupCorruptError) as verified:
        verify_backup(result.path)
    assert str(result.path) in str(verified.value)
    assert ("truncated" in str(verified.value)) == (damage == "truncate")
    assert "SHA-256" in str(verified.value) or "bytes" in str(verified.value)

    before = fingerprints(seeded)
    with pytest.raises(BackupCorruptError, match="is corrupted"):
        restore_backup(result.path, conninfo=seeded, force=True)
    assert fingerprints(seeded) == before


def test_table_of_contents_must_name_every_table_of_the_metadata(
    seeded: str, tmp_path: Path
) -> None:
    result = create_backup(conninfo=seeded, backup_dir=tmp_path, kind="daily")
    # A sidecar signed with our key (an edited one is refused outright; see test_restore_safety).
    counts = {**result.info.row_counts, "table_that_was_never_dumped": 1}
    write_info(dataclasses.replace(result.info, row_counts=counts))
    with pytest.raises(BackupCorruptError, match="lacks table_that_was_never_dumped"):
        verify_backup(result.path)


def test_restore_over_live_database_refuses_active_sessions_unless_forced(
    seeded: str, tmp_path: Path
) -> None:
    result = create_backup(conninfo=seeded, backup_dir=tmp_path, kind="daily")
    before = fingerprints(seeded)
    with psycopg.connect(seeded, autocommit=True) as conn:
        conn.execute("DELETE FROM klaviyo_events WHERE id LIKE 'e1%'")
        changed = fingerprints(seeded)
        assert changed != before

        with pytest.raises(RestoreRefusedError, match="active connection") as refused:
            restore_backup(result.path, conninfo=seeded)
        assert "--force" in str(refused.value)
        assert fingerprints(seeded) == changed  # nothing happened
        conn.execute("SELECT 1")  # our session survived

        done = restore_backup(result.path, conninfo=seeded, force=True)
        assert done.replaced_live and done.sessions_ended >= 1
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")  # our session was ended
    assert fingerprints(seeded) == before


def test_restore_over_idle_live_database_needs_no_force(seeded: str, tmp_path: Path) -> None:
    result = create_backup(conninfo=seeded, backup_dir=tmp_path, kind="weekly")
    before = fingerprints(seeded)
    with psycopg.connect(seeded, autocommit=True) as conn:
        conn.execute("TRUNCATE sync_state")
    done = restore_backup(result.path, conninfo=seeded)
    assert done.replaced_live and done.sessions_ended == 0
    assert fingerprints(seeded) == before


def test_backup_from_a_newer_server_major_is_refused(seeded: str, tmp_path: Path) -> None:
    result = create_backup(conninfo=seeded, backup_dir=tmp_path, kind="daily")
    write_info(dataclasses.replace(result.info, server_major=99, server_version="99.1"))
    with pytest.raises(RestoreRefusedError, match=r"made from PostgreSQL 99\.1.*older major"):
        restore_backup(result.path, conninfo=seeded, new_db="ka_never_created")


def test_new_database_that_exists_is_refused(
    pg_server: PgServer, seeded: str, tmp_path: Path
) -> None:
    result = create_backup(conninfo=seeded, backup_dir=tmp_path, kind="daily")
    with pytest.raises(RestoreRefusedError, match="already exists"):
        restore_backup(result.path, conninfo=seeded, new_db="postgres")


def test_unknown_kind_and_missing_file_give_clear_errors(seeded: str, tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="unknown backup kind 'yearly'"):
        create_backup(conninfo=seeded, backup_dir=tmp_path, kind="yearly")
    with pytest.raises(BackupError, match=r"backup file .*nope\.dump does not exist"):
        verify_backup(tmp_path / "nope.dump")


def test_unwritable_backup_dir_is_a_clear_error(seeded: str, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(BackupWriteError, match="cannot create backup folder"):
        create_backup(conninfo=seeded, backup_dir=blocker, kind="daily")


@pytest.fixture
def tiny_disk(tmp_path: Path) -> object:
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount_point
    for _ in range(20):
        if subprocess.run(["umount", str(mount_point)], check=False).returncode == 0:
            break
        time.sleep(0.1)


def test_full_disk_leaves_no_partial_file_and_counts_a_failure(
    seeded: str, tiny_disk: Path
) -> None:
    with pytest.raises(BackupWriteError, match="no space left") as failed:
        create_backup(conninfo=seeded, backup_dir=tiny_disk, kind="daily")
    assert str(tiny_disk) in str(failed.value)
    assert list((tiny_disk / "daily").iterdir()) == []
    assert list_backups(tiny_disk) == []
    stats = backup_stats(tiny_disk)
    assert stats.failures == 1 and stats.successes == 0
    assert stats.last_error is not None and "no space left" in stats.last_error


def test_embedded_server_is_dumped_with_the_wheels_tools(
    pg_server: PgServer, seeded: str, tmp_path: Path
) -> None:
    if pg_server.embedded is None:
        pytest.skip("DATABASE_URL is set: the embedded server is not in use")
    result = create_backup(conninfo=seeded, backup_dir=tmp_path, kind="monthly")
    assert result.info.tool_major == result.info.server_major == 18
    assert result.info.tool_version.startswith("pg_dump (PostgreSQL) 18.")
