"""The backup commands as a user runs them: real processes, exit codes and messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg

from tests.fixtures.database import PgServer
from tests.integration.backup.helpers import fingerprints, seed


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DB_", "DATABASE_URL", "BACKUP_", "MAX_", "KLAVIYO_ANALYTICS_HOME"))
    }
    return subprocess.run(
        [sys.executable, "-m", "klaviyo_analytics.cli", "backup", *args],
        env={**base, "COLUMNS": "200", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_create_list_verify_restore_through_the_command_line(
    pg_server: PgServer, db_conninfo: str, tmp_path: Path
) -> None:
    seed(db_conninfo, events=300)
    env = {
        "DATABASE_URL": db_conninfo,
        "KLAVIYO_ANALYTICS_HOME": str(tmp_path / "home"),
        "BACKUP_DIR": str(tmp_path / "backups"),
    }
    created = run_cli("create", "--kind", "hourly", "--test", env=env)
    assert created.returncode == 0, created.stderr
    assert "backup written" in created.stdout and "trial restore" in created.stdout
    [dump] = (tmp_path / "backups" / "hourly").glob("*.dump")

    listed = run_cli("list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "hourly" in listed.stdout and dump.name in listed.stdout
    assert "yes, restored" in listed.stdout and "1 ok, 0 failed" in listed.stdout

    verified = run_cli("verify", dump.name, env=env)  # a bare name is looked up in BACKUP_DIR
    assert verified.returncode == 0, verified.stderr
    assert "is good" in verified.stdout

    new_db = f"ka_cli_{uuid.uuid4().hex[:8]}"
    try:
        restored = run_cli("restore", str(dump), "--new-db", new_db, env=env)
        assert restored.returncode == 0, restored.stderr
        assert f"into new database {new_db}" in restored.stdout
        assert fingerprints(pg_server.conninfo(new_db)) == fingerprints(db_conninfo)
    finally:
        pg_server.drop_database(new_db)

    with psycopg.connect(db_conninfo, autocommit=True) as conn:
        busy = run_cli("restore", str(dump), env=env)
        assert busy.returncode == 1
        assert "active connection" in busy.stderr and "--force" in busy.stderr
        conn.execute("SELECT 1")
        forced = run_cli("restore", str(dump), "--force", env=env)
        assert forced.returncode == 0, forced.stderr
        assert "ended 1 session" in forced.stdout

    data = bytearray(dump.read_bytes())
    data[-10] ^= 0xFF
    dump.write_bytes(bytes(data))
    bad_verify = run_cli("verify", str(dump), env=env)
    bad_restore = run_cli("restore", str(dump), "--new-db", "ka_never", env=env)
    for bad in (bad_verify, bad_restore):
        assert bad.returncode == 1
        assert "corrupted" in bad.stderr and dump.name in bad.stderr
        assert "Traceback" not in bad.stderr + bad.stdout


def test_bad_input_exits_nonzero_with_a_clear_message(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "KLAVIYO_ANALYTICS_HOME": str(tmp_path / "home"),
        "BACKUP_DIR": str(tmp_path / "backups"),
    }
    kind = run_cli("create", "--kind", "yearly", env=env)
    assert kind.returncode == 1 and "unknown backup kind 'yearly'" in kind.stderr
    missing = run_cli("verify", str(tmp_path / "missing.dump"), env=env)
    assert missing.returncode == 1 and "missing.dump does not exist" in missing.stderr
    when = run_cli("pitr", "restore", "--to", "yesterday", "--target-dir", str(tmp_path), env=env)
    assert when.returncode == 1 and "cannot read time 'yesterday'" in when.stderr
    empty = run_cli("list", env=env)
    assert empty.returncode == 0 and "0 backup(s)" in empty.stdout
    for result in (kind, missing, when, empty):
        assert "Traceback" not in result.stderr + result.stdout


def test_a_backup_from_an_older_version_is_refused_until_trusted_then_verifies(
    db_conninfo: str, tmp_path: Path
) -> None:
    seed(db_conninfo, events=50)
    env = {
        "DATABASE_URL": db_conninfo,
        "KLAVIYO_ANALYTICS_HOME": str(tmp_path / "home"),
        "BACKUP_DIR": str(tmp_path / "backups"),
    }
    assert run_cli("create", "--kind", "daily", env=env).returncode == 0
    [dump] = (tmp_path / "backups" / "daily").glob("*.dump")
    sidecar = dump.with_name(dump.name + ".json")
    # An older version wrote no signature.
    old = json.loads(sidecar.read_text())
    del old["hmac"]
    sidecar.write_text(json.dumps(old))

    refused = run_cli("verify", dump.name, env=env)
    assert refused.returncode == 1 and "not authentic" in refused.stderr
    assert f"backup trust {dump.name}" in refused.stderr
    unconfirmed = run_cli("trust", dump.name, env=env)
    assert unconfirmed.returncode == 1 and "--yes" in unconfirmed.stderr
    assert "hmac" not in json.loads(sidecar.read_text())

    trusted = run_cli("trust", dump.name, "--yes", env=env)
    assert trusted.returncode == 0, trusted.stderr
    assert "signed" in trusted.stdout and "checksum ok" in trusted.stdout
    verified = run_cli("verify", dump.name, env=env)
    assert verified.returncode == 0, verified.stderr

    # A dump whose bytes no longer match what its sidecar records is never signed.
    del old["sha256"]
    old["sha256"] = "0" * 64
    sidecar.write_text(json.dumps(old))
    tampered = run_cli("trust", dump.name, "--yes", env=env)
    assert tampered.returncode == 1 and "does not match its metadata" in tampered.stderr
    assert "hmac" not in json.loads(sidecar.read_text())
    for result in (refused, unconfirmed, trusted, tampered):
        assert "Traceback" not in result.stderr + result.stdout
