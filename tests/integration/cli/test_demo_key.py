"""The demo's admin key: one key kept 0600 beside the data, so a second run keeps pages logged in."""

from __future__ import annotations

import stat
from pathlib import Path

from typer.testing import CliRunner

from klaviyo_analytics.api.auth import hash_token
from klaviyo_analytics.cli.demo import DEMO_KEY_NAME, _demo_admin_key
from klaviyo_analytics.cli.main import app
from klaviyo_analytics.config import Settings
from klaviyo_analytics.db.pool import Conn, Database
from klaviyo_analytics.db.repos.api_keys import ApiKeyRepository


async def active_demo_keys(conninfo: str) -> list[str]:
    async with Database(conninfo, min_size=1, max_size=1) as db:

        async def work(conn: Conn) -> list[str]:
            keys = await ApiKeyRepository().list(conn, include_revoked=False)
            return [k.prefix for k in keys if k.name == DEMO_KEY_NAME]

        found: list[str] = await db.run(work)
        return found


async def test_a_second_demo_run_reuses_the_saved_key_and_a_revoked_one_is_replaced(
    db_conninfo: str, tmp_path: Path
) -> None:
    settings = Settings(data_home=tmp_path, min_free_disk_mb=0)
    path = tmp_path / "home" / "demo-admin-key"
    first = await _demo_admin_key(settings, db_conninfo, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == first
    second = await _demo_admin_key(settings, db_conninfo, path)
    assert second == first
    prefixes = await active_demo_keys(db_conninfo)
    assert len(prefixes) == 1 and first.startswith(prefixes[0])

    # The saved key no longer works (revoked, or another database): a new one replaces it.
    async with Database(db_conninfo, min_size=1, max_size=1) as db:

        async def revoke(conn: Conn) -> None:
            found = await ApiKeyRepository().find_active(conn, hash_token(first))
            assert found is not None
            await ApiKeyRepository().revoke(conn, found.id)

        await db.run(revoke)
    third = await _demo_admin_key(settings, db_conninfo, path)
    assert third != first and path.read_text().strip() == third
    assert len(await active_demo_keys(db_conninfo)) == 1


def test_help_shows_flags_without_a_bool_placeholder() -> None:
    for args in (["--help"], ["demo", "--help"], ["sync", "--help"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.output, args
        assert "--help" in result.output
