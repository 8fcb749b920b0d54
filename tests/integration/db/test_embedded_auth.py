"""The embedded server lets no other local user in: a 0700 socket folder and peer auth only.

Each test runs a server of its own (never the session's shared one). "Another local user" is
the system's `nobody`, running psql against the server's socket.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from klaviyo_analytics.db.embedded import EmbeddedPostgres

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")


def as_nobody(server: EmbeddedPostgres) -> subprocess.CompletedProcess[str]:
    """Try `SELECT 1` as the postgres role from the `nobody` account."""
    return subprocess.run(
        [
            *(str(server.bin_dir / "psql"), "-h", str(server.socket_dir), "-p", "5432"),
            *("-U", "postgres", "-d", "postgres", "-w", "-Atc", "SELECT 1"),
        ],
        user="nobody",
        group="nogroup",
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd="/",
    )


@contextmanager
def opened(folder: Path) -> Iterator[None]:
    """Open `folder` and its parents to everyone for a moment (as a careless admin might)."""
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in (folder, *folder.parents)}
    for p, mode in modes.items():
        p.chmod(mode | 0o755)
    try:
        yield
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def no_trust(data_dir: Path) -> None:
    rules = [
        line.split()
        for line in (data_dir / "pg_hba.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules and all("trust" not in rule for rule in rules), rules


def test_a_socket_folder_in_tmp_is_private_and_refuses_other_users(tmp_path: Path) -> None:
    long = tmp_path / ("x" * 80) / "pgdata"  # too long for a socket: it goes to /tmp
    with EmbeddedPostgres(long) as server:
        assert "klaviyo-analytics-pg-" in str(server.socket_dir)
        assert stat.S_IMODE(server.socket_dir.stat().st_mode) == 0o700
        with psycopg.connect(server.conninfo()) as conn:  # we still get in
            assert conn.execute("SELECT 1").fetchone() == (1,)
        denied = as_nobody(server)
        assert denied.returncode != 0 and "1" != denied.stdout.strip()
        # Even with the folders opened up, no password-less way in remains.
        with opened(server.socket_dir):
            refused = as_nobody(server)
            assert refused.returncode != 0, refused.stdout
            assert "authentication failed" in refused.stderr
        no_trust(server.data_dir)


def test_a_trust_data_dir_of_an_older_version_is_switched_to_peer_while_running(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "pgdata"
    old = EmbeddedPostgres(data_dir)
    data_dir.mkdir(mode=0o700)
    run_as = old._prepare_system_user()
    # What version 1 did: initdb with trust, a socket folder anyone may enter.
    old._run("initdb", ["-D", str(data_dir), "--auth=trust", "-U", "postgres"], run_as)
    digest = hashlib.sha256(str(tmp_path).encode()).hexdigest()[:12]
    sockets = Path(tempfile.gettempdir()) / f"ka-test-old-{digest}"
    sockets.mkdir(exist_ok=True)
    sockets.chmod(0o777)
    old._run(
        "pg_ctl",
        [
            *("-D", str(data_dir), "-w", "-l", str(data_dir / "server.log")),
            *("-o", f"-c listen_addresses='' -k {sockets}", "start"),
        ],
        run_as,
    )
    try:
        server = EmbeddedPostgres(data_dir).start()  # finds it running, on trust
        assert server.socket_dir == sockets
        no_trust(data_dir)
        with opened(data_dir):
            refused = as_nobody(server)
            assert refused.returncode != 0 and "authentication failed" in refused.stderr
        with psycopg.connect(server.conninfo()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        old._run("pg_ctl", ["-D", str(data_dir), "-w", "-m", "fast", "stop"], run_as)
        sockets.rmdir()
    # A later start (not running) keeps working too.
    with EmbeddedPostgres(data_dir) as again, psycopg.connect(again.conninfo()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
