"""The reader and writer roles, and the reader's blindness to personal columns."""

from __future__ import annotations

import psycopg
import pytest

from klaviyo_analytics.db.pool import Database, QueryError


def test_reader_role_cannot_insert(db_conninfo: str) -> None:
    with psycopg.connect(db_conninfo) as conn:
        conn.execute("SET ROLE analytics_reader")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO klaviyo_metrics (id, name) VALUES ('m', 'x')")


def test_reader_role_cannot_read_profile_emails_but_can_read_the_public_view(
    db_conninfo: str,
) -> None:
    with psycopg.connect(db_conninfo, autocommit=True) as conn:
        conn.execute("INSERT INTO klaviyo_profiles (id, email) VALUES ('p1', 'a@example.com')")
        conn.execute("SET ROLE analytics_reader")
        assert conn.execute("SELECT id, created FROM klaviyo_profiles").fetchall() == [("p1", None)]
        assert conn.execute("SELECT count(*) FROM klaviyo_profiles_public").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT email FROM klaviyo_profiles")


def test_writer_role_can_insert_and_update_but_not_delete(db_conninfo: str) -> None:
    with psycopg.connect(db_conninfo, autocommit=True) as conn:
        conn.execute("SET ROLE etl_writer")
        conn.execute("INSERT INTO klaviyo_metrics (id, name) VALUES ('m', 'x')")
        conn.execute("UPDATE klaviyo_metrics SET name = 'y' WHERE id = 'm'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM klaviyo_metrics")


def test_tables_created_after_the_roles_are_readable_by_the_reader(db_conninfo: str) -> None:
    with psycopg.connect(db_conninfo, autocommit=True) as conn:
        conn.execute("CREATE TABLE later_table (id int)")
        conn.execute("SET ROLE analytics_reader")
        assert conn.execute("SELECT count(*) FROM later_table").fetchone() == (0,)


async def test_readonly_runs_use_the_reader_role(database: Database) -> None:
    async def who(conn: psycopg.AsyncConnection) -> str:  # type: ignore[type-arg]
        cur = await conn.execute("SELECT current_user AS u")
        row = await cur.fetchone()
        return str(row["u"])

    assert await database.run(who, readonly=True) == "analytics_reader"

    async def write(conn: psycopg.AsyncConnection) -> None:  # type: ignore[type-arg]
        await conn.execute("INSERT INTO klaviyo_metrics (id, name) VALUES ('m', 'x')")

    with pytest.raises(QueryError) as refused:
        await database.run(write, readonly=True)
    assert refused.value.sqlstate == "25006"  # read-only transaction
