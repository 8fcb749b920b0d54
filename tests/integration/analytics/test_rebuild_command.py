"""`klaviyo-analytics analytics rebuild` as a user runs it: a real process on a synced database."""

from __future__ import annotations

import psycopg

from tests.integration.analytics.checks import assert_facts_exact
from tests.integration.cli.test_db_commands import run_cli


def test_rebuild_command_recreates_aggregates_and_facts_exactly_and_prints_a_summary(
    synced_conninfo: str,
) -> None:
    with psycopg.connect(synced_conninfo) as conn:
        aggregates = conn.execute(
            "SELECT metric_id, bucket_size, bucket_start, count, sum_value"
            " FROM klaviyo_aggregated_metrics ORDER BY 1, 2, 3"
        ).fetchall()
        conn.execute("DELETE FROM fact_revenue")
        conn.execute("DELETE FROM klaviyo_aggregated_metrics")
        conn.execute("INSERT INTO fact_forms (date, form_id, views) VALUES ('2001-01-01', 'x', 1)")
    done = run_cli("analytics", "rebuild", env={"DATABASE_URL": synced_conninfo}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "analytics rebuilt" in done.stdout and "fact_revenue" in done.stdout
    assert_facts_exact(synced_conninfo, "America/New_York")
    with psycopg.connect(synced_conninfo) as conn:
        after = conn.execute(
            "SELECT metric_id, bucket_size, bucket_start, count, sum_value"
            " FROM klaviyo_aggregated_metrics ORDER BY 1, 2, 3"
        ).fetchall()
    assert after == aggregates


def test_rebuild_command_refuses_an_unknown_time_zone_with_one_line(synced_conninfo: str) -> None:
    done = run_cli(
        "analytics", "rebuild", "--timezone", "Mars/Olympus",
        env={"DATABASE_URL": synced_conninfo},
    )  # fmt: skip
    assert done.returncode == 1
    assert "Mars/Olympus" in done.stderr and "Traceback" not in done.stderr
