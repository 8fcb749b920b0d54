"""The API's read path logs in as a role with the reader's rights only: RESET ROLE gains nothing.

And the sync's writer role cannot read or change API keys.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from klaviyo_analytics.api.app import create_app
from klaviyo_analytics.config import load_settings
from klaviyo_analytics.db.pool import Conn, QueryError


async def test_reset_role_in_the_apis_read_transaction_regains_no_rights(
    db_conninfo: str, tmp_path: Path
) -> None:
    app = create_app(load_settings(data_home=tmp_path), conninfo=db_conninfo)
    async with app.router.lifespan_context(app):
        db = app.state.resources.db

        async def escape(conn: Conn) -> tuple[str, str, bool]:
            before = await (await conn.execute("SELECT current_user AS u")).fetchone()
            await conn.execute("RESET ROLE")
            cur = await conn.execute(
                "SELECT current_user AS u, rolsuper FROM pg_roles WHERE rolname = current_user"
            )
            row = await cur.fetchone()
            assert before is not None and row is not None
            return str(before["u"]), str(row["u"]), bool(row["rolsuper"])

        inside, after_reset, superuser = await db.run(escape, readonly=True)
        assert inside == "analytics_reader"
        assert after_reset == "klaviyo_api_reader" and superuser is False

        async def steal_keys(conn: Conn) -> None:
            await conn.execute("RESET ROLE")
            await conn.execute("SELECT token_hash FROM api_keys")

        with pytest.raises(QueryError) as refused:
            await db.run(steal_keys, readonly=True)
        assert refused.value.sqlstate == "42501"  # insufficient privilege

        async def set_role_postgres(conn: Conn) -> None:
            await conn.execute("RESET ROLE")
            await conn.execute("SET ROLE postgres")

        with pytest.raises(QueryError) as refused:
            await db.run(set_role_postgres, readonly=True)
        assert refused.value.sqlstate == "42501"


def test_the_writer_role_cannot_touch_api_keys(db_conninfo: str) -> None:
    with psycopg.connect(db_conninfo, autocommit=True) as conn:
        conn.execute("SET ROLE etl_writer")
        for statement in (
            "SELECT token_hash FROM api_keys",
            "INSERT INTO api_keys (name, role, token_hash, prefix)"
            " VALUES ('x', 'admin', repeat('a', 64), 'ka_')",
            "UPDATE api_keys SET role = 'admin'",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
