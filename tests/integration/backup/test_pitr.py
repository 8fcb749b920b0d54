"""Point-in-time recovery on a server of its own: archiving needs a restart."""

from __future__ import annotations

import stat
import time
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from klaviyo_analytics.backup import archiving, pitr
from klaviyo_analytics.backup.errors import RecoveryError
from klaviyo_analytics.db.embedded import EmbeddedPostgres


def names(conninfo: str) -> list[str]:
    with psycopg.connect(conninfo) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM marks ORDER BY name")]


@pytest.mark.slow
def test_recovery_to_a_noted_time_keeps_earlier_writes_and_drops_later_ones(
    tmp_path: Path,
) -> None:
    backup_dir = tmp_path / "backups"
    with EmbeddedPostgres(tmp_path / "live") as server:
        assert archiving.enable_embedded_archiving(server, archiving.wal_dir_of(backup_dir)) is True
        assert archiving.archiving_enabled(server.conninfo())
        # A second setup finds archiving on and needs no restart.
        assert (
            archiving.enable_embedded_archiving(server, archiving.wal_dir_of(backup_dir)) is False
        )
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE app")
        app = server.conninfo("app")
        with psycopg.connect(app, autocommit=True) as conn:
            conn.execute("CREATE TABLE marks (name text PRIMARY KEY)")
        base = pitr.take_base_backup(conninfo=app, backup_dir=backup_dir)
        assert (base.path / "base.tar.gz").is_file()

        with psycopg.connect(app, autocommit=True) as conn:
            conn.execute("INSERT INTO marks VALUES ('A')")
            row = conn.execute("SELECT clock_timestamp()").fetchone()
            assert row is not None
            noted: datetime = row[0]
            time.sleep(0.05)
            conn.execute("INSERT INTO marks VALUES ('B')")
        segment = archiving.switch_wal(server.conninfo())
        assert (archiving.wal_dir_of(backup_dir) / segment).is_file()
        # The archive and the base backup hold every row: closed to other users.
        for path in [archiving.wal_dir_of(backup_dir), *archiving.wal_dir_of(backup_dir).iterdir()]:
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
        for path in [base.path, *base.path.iterdir()]:
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
        assert names(app) == ["A", "B"]

    with pytest.raises(RecoveryError, match="no base backup"):
        pitr.recover_to(
            backup_dir=backup_dir,
            target_time=base.started_at.replace(year=2000),
            target_dir=tmp_path / "too-early",
        )

    recovered = pitr.recover_to(
        backup_dir=backup_dir, target_time=noted, target_dir=tmp_path / "restored"
    )
    try:
        assert recovered.base.path == base.path
        assert names(recovered.conninfo("app")) == ["A"]
        with psycopg.connect(recovered.conninfo("app"), autocommit=True) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            assert row is not None and row[0] is False  # promoted: it takes writes again
            conn.execute("INSERT INTO marks VALUES ('C')")
    finally:
        pitr.stop_server(recovered.data_dir)
    assert not (recovered.data_dir / "postmaster.pid").exists()


def test_recovery_refuses_a_non_empty_target_folder_and_a_naive_time(tmp_path: Path) -> None:
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "file").write_text("x")
    with pytest.raises(RecoveryError, match="needs a time zone"):
        pitr.recover_to(
            backup_dir=tmp_path, target_time=datetime(2026, 1, 1), target_dir=tmp_path / "x"
        )
