"""Create and drop whole databases on a server (the embedded one, test and benchmark servers).

Each function opens its own autocommit connection on `admin` (a connection string to any
database of the server, as a role allowed to create databases).
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

logger = logging.getLogger(__name__)


def database_exists(admin: str, name: str) -> bool:
    """Say whether database `name` exists on the server of `admin`."""
    with psycopg.connect(admin, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return found is not None


def create_database(admin: str, name: str, *, template: str | None = None) -> None:
    """Create database `name`, as a copy of `template` when given."""
    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)
        )
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(query)


def ensure_database(admin: str, name: str) -> None:
    """Create database `name` unless it exists."""
    if not database_exists(admin, name):
        logger.info("creating database %s", name)
        create_database(admin, name)


def seal_template(admin: str, name: str) -> None:
    """Mark database `name` as a template nobody may connect to, and end who is connected.

    TimescaleDB's launcher starts a scheduler in every database that allows connections and is
    not a template; while it is connected, `CREATE DATABASE ... TEMPLATE` fails with
    ObjectInUse. On plain PostgreSQL this only guards against stray sessions.
    """
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false").format(
                sql.Identifier(name)
            )
        )
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )


def drop_database(admin: str, name: str) -> None:
    """Drop database `name` if it exists (a sealed template too), ending its sessions first."""
    with psycopg.connect(admin, autocommit=True) as conn:
        found = conn.execute(
            "SELECT datistemplate FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if found is not None and found[0]:
            conn.execute(
                sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE false").format(sql.Identifier(name))
            )
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
