"""Klaviyo's predictive analytics arrive with the profiles stream, exact, NULL where absent,
and are re-read in full once they may be a week old (they change without `updated` moving)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import psycopg

from klaviyo_analytics.sandbox.server import SandboxServer
from klaviyo_analytics.sync.streams import PREDICTIONS_REFRESH
from tests.fixtures.sandbox import SandboxFactory, served_predictions
from tests.fixtures.sync import sync_service

FIELDS = (
    "historic_clv", "predicted_clv", "total_clv", "historic_number_of_orders",
    "predicted_number_of_orders", "average_days_between_orders", "average_order_value",
    "churn_probability",
)  # fmt: skip
DAY_S = 86_400


def _stored(conninfo: str) -> dict[str, dict[str, Any]]:
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            f"SELECT id, {', '.join(FIELDS)}, expected_date_of_next_order FROM klaviyo_profiles"
        ).fetchall()
    return {r[0]: dict(zip((*FIELDS, "expected_date_of_next_order"), r[1:], strict=True))
            for r in rows}  # fmt: skip


def _expected(pa: dict[str, Any]) -> dict[str, Any]:
    """What the database should hold for one profile: the same values, None as NULL."""
    out: dict[str, Any] = {f: None if pa[f] is None else Decimal(pa[f]) for f in FIELDS}
    when = pa["expected_date_of_next_order"]
    out["expected_date_of_next_order"] = datetime.fromisoformat(when) if when else None
    return out


def _advance(server: SandboxServer, seconds: int) -> None:
    httpx.post(f"{server.base_url}/admin/clock", json={"advance_seconds": seconds}, timeout=10)


async def test_stored_predictions_equal_the_sandboxs_and_are_refreshed_once_a_week_old(
    db_conninfo: str, make_sandbox: SandboxFactory
) -> None:
    server = make_sandbox()
    total = server.generator.options.profiles
    async with sync_service(db_conninfo, server) as service:
        first = await service.run("profiles")
    assert first.status == "succeeded" and first.fetched == total
    truth = served_predictions(server)
    stored = _stored(db_conninfo)
    assert stored == {pid: _expected(pa) for pid, pa in truth.items()}
    # Absent values stay NULL, never 0: one-order customers have no days between orders,
    # profiles without orders no expected next order.
    for field in ("average_days_between_orders", "expected_date_of_next_order"):
        nulls = [pid for pid, row in stored.items() if row[field] is None]
        assert nulls and all(truth[pid][field] is None for pid in nulls), field
    assert any(row["historic_number_of_orders"] == 0 for row in stored.values())

    # Three days on, the sandbox's predictions have moved, `updated` has not: an incremental
    # run re-reads only the cursor's second and leaves the (at most a week old) values.
    _advance(server, 3 * DAY_S)
    moved = served_predictions(server)
    assert moved != truth
    async with sync_service(db_conninfo, server) as service:
        second = await service.run("profiles")
    assert second.status == "succeeded" and second.fetched < total
    with psycopg.connect(db_conninfo) as conn:
        reread = {r[0] for r in conn.execute(
            "SELECT id FROM klaviyo_profiles"
            " WHERE updated > (SELECT max(updated) FROM klaviyo_profiles) - interval '1 second'"
        ).fetchall()}  # fmt: skip
    assert len(reread) == second.fetched
    after = _stored(db_conninfo)
    assert {p: after[p] for p in reread} == {p: _expected(moved[p]) for p in reread}
    assert {p: r for p, r in after.items() if p not in reread} == {
        p: r for p, r in stored.items() if p not in reread
    }

    # Once the last complete read is PREDICTIONS_REFRESH old, the run re-reads every profile.
    _advance(server, PREDICTIONS_REFRESH.days * DAY_S - 3 * DAY_S)
    now = served_predictions(server)
    async with sync_service(db_conninfo, server) as service:
        third = await service.run("profiles")
    assert third.status == "succeeded" and third.fetched == total
    assert _stored(db_conninfo) == {pid: _expected(pa) for pid, pa in now.items()}
    with psycopg.connect(db_conninfo) as conn:
        (state,) = conn.execute("SELECT state FROM sync_state WHERE stream = 'profiles'").fetchone()  # type: ignore[misc]
    assert "predictions_pass" not in state and state["predictions_read_at"]


async def test_with_profile_predictions_off_profiles_sync_without_them_and_store_null(
    db_conninfo: str, make_sandbox: SandboxFactory
) -> None:
    server = make_sandbox()
    total = server.generator.options.profiles
    async with sync_service(db_conninfo, server) as service:
        service.options = replace(service.options, profile_predictions=False)
        off = await service.run("profiles")
    assert off.status == "succeeded" and off.fetched == total
    stored = _stored(db_conninfo)
    assert len(stored) == total
    assert all(value is None for row in stored.values() for value in row.values())
    with psycopg.connect(db_conninfo) as conn:
        (state,) = conn.execute("SELECT state FROM sync_state WHERE stream = 'profiles'").fetchone()  # type: ignore[misc]
    # No pass was made, so turning the setting on later starts one at once.
    assert "predictions_read_at" not in state and "predictions_pass" not in state
    async with sync_service(db_conninfo, server) as service:
        on = await service.run("profiles")
    assert on.status == "succeeded" and on.fetched == total
    assert _stored(db_conninfo) == {
        pid: _expected(pa) for pid, pa in served_predictions(server).items()
    }
