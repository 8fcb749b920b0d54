"""Seed a database with data in several tables, and fingerprint every table for comparisons."""

from __future__ import annotations

import psycopg
from psycopg import sql

SEEDED_TABLES = ("klaviyo_metrics", "klaviyo_profiles", "klaviyo_events", "sync_state")


def seed(conninfo: str, *, events: int = 2000) -> None:
    """Insert metrics, profiles (with a stub), events with money values and sync state."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO klaviyo_metrics (id, name, integration_name) VALUES"
            " ('m_order', 'Placed Order', 'Shopify'), ('m_open', 'Opened Email', 'Klaviyo')"
        )
        conn.execute(
            "INSERT INTO klaviyo_profiles (id, email, first_name, properties, is_stub)"
            " SELECT 'p' || g, 'shopper' || g || '@example.com', 'O''Neil',"
            " jsonb_build_object('tier', g % 3, 'tags', jsonb_build_array('a', g)), g % 50 = 0"
            " FROM generate_series(1, 300) g"
        )
        conn.execute(
            "INSERT INTO klaviyo_events (id, timestamp, metric_id, profile_id, value, properties)"
            " SELECT 'e' || g, timestamptz '2026-01-01 00:00:00+00' + g * interval '7 minutes',"
            "  CASE WHEN g %% 4 = 0 THEN 'm_order' ELSE 'm_open' END,"
            "  CASE WHEN g %% 10 = 0 THEN NULL ELSE 'p' || (g %% 300 + 1) END,"
            "  CASE WHEN g %% 4 = 0 THEN round((g %% 997) * 1.37 - 50, 2) END,"
            "  jsonb_build_object('n', g, 'text', repeat('x', g %% 40))"
            " FROM generate_series(1, %s) g",
            (events,),
        )
        conn.execute(
            "INSERT INTO sync_state (stream, partition, cursor_value, state) VALUES"
            " ('events', '', '2026-01-10T00:00:00Z', '{\"page\": 3}'), ('profiles', '', NULL, '{}')"
        )


def fingerprints(conninfo: str) -> dict[str, tuple[int, str]]:
    """Return (row count, md5 of every row in primary-key order) for each public table."""
    out: dict[str, tuple[int, str]] = {}
    with psycopg.connect(conninfo) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
                " AND relkind IN ('r', 'p') ORDER BY relname"
            )
        ]
        for table in tables:
            ident = sql.Identifier(table)
            row = conn.execute(
                sql.SQL(
                    "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
                    " FROM {} t"
                ).format(ident)
            ).fetchone()
            assert row is not None
            out[table] = (int(row[0]), str(row[1]))
    return out
