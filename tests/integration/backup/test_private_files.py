"""Backups and the local home are the owner's alone: files 0600, folders closed to others."""

from __future__ import annotations

import stat
from pathlib import Path

from klaviyo_analytics.backup.dump import create_backup
from klaviyo_analytics.config import load_settings
from klaviyo_analytics.wiring import database_server
from tests.integration.backup.helpers import seed


def others_may(path: Path) -> int:
    """Return the permission bits `path` gives to users other than its owner (and server)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    # Group traverse (0o010) is how the server's own system user passes when we are root.
    return mode & (0o067 if path.is_dir() else 0o077)


def test_a_backup_and_its_folders_are_readable_by_the_owner_only(
    db_conninfo: str, tmp_path: Path
) -> None:
    seed(db_conninfo, events=50)
    backup_dir = tmp_path / "home" / "backups"
    result = create_backup(conninfo=db_conninfo, backup_dir=backup_dir, kind="daily")
    written = [result.path, result.info.sidecar, backup_dir / "status.json"]
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in (backup_dir, backup_dir / "daily", tmp_path / "home"):
        assert others_may(folder) == 0, (folder, oct(folder.stat().st_mode))
    every = [p for p in backup_dir.rglob("*")]
    assert every and all(others_may(p) == 0 for p in every), [
        (p, oct(p.stat().st_mode)) for p in every if others_may(p)
    ]


def test_the_home_folder_of_an_embedded_server_is_closed_to_others(tmp_path: Path) -> None:
    home = tmp_path / "ka-home"
    home.mkdir(mode=0o755)  # as an older version left it
    home.chmod(0o755)
    # The embedded server even in the passes that point DATABASE_URL at another server.
    settings = load_settings(data_home=home, database_url=None)
    assert settings.database_url is None
    with database_server(settings):
        assert others_may(home) == 0, oct(home.stat().st_mode)
        assert others_may(settings.embedded_data_dir) == 0
