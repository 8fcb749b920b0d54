"""Anomaly detection on stored daily series: spikes and drops flagged, quiet weeks not, re-runs upsert."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from klaviyo_analytics.analytics.anomalies import detect_anomalies
from klaviyo_analytics.analytics.errors import InvalidParameterError, SeriesTooShortError
from klaviyo_analytics.db.pool import Conn
from klaviyo_analytics.db.repos.anomalies import AnomalyRepository
from tests.integration.analytics.seriesdata import (
    NY,
    add_daily_values,
    add_metric,
    conn_fixture,  # noqa: F401
    day_bounds,
)

FIRST = date(2026, 1, 5)
DAYS = 56
SEASON = np.array([0.0, 8.0, 15.0, 20.0, 10.0, -25.0, -28.0])


def normal_days(seed: int = 9) -> list[float]:
    rng = np.random.default_rng(seed)
    t = np.arange(DAYS)
    return list(300.0 + 0.5 * t + SEASON[t % 7] + rng.normal(0.0, 4.0, DAYS))


async def test_an_injected_spike_and_drop_are_flagged_on_their_days(conn: Conn) -> None:
    await add_metric(conn, "m-order")
    values = normal_days()
    values[30] += 120.0
    values[44] -= 90.0
    await add_daily_values(conn, "m-order", FIRST, values)
    start, end = day_bounds(FIRST, FIRST + timedelta(days=DAYS - 1))
    found = await detect_anomalies(conn, "m-order", start=start, end=end, tz=NY, measure="sum")
    assert [(a.date, a.direction) for a in found] == [
        (FIRST + timedelta(days=30), "spike"),
        (FIRST + timedelta(days=44), "drop"),
    ]
    spike = found[0]
    assert spike.observed == pytest.approx(values[30], abs=0.01)
    assert spike.expected == pytest.approx(values[30] - 120.0, abs=15.0)
    assert spike.score > 3.5 and found[1].score < -3.5
    stored = await AnomalyRepository().list(
        conn, "m-order", "sum", FIRST, FIRST + timedelta(days=DAYS)
    )
    assert [(r.date, r.direction, r.threshold) for r in stored] == [
        (a.date, a.direction, 3.5) for a in found
    ]


async def test_normal_weeks_are_not_flagged(conn: Conn) -> None:
    await add_metric(conn, "m-order")
    await add_daily_values(conn, "m-order", FIRST, normal_days())
    start, end = day_bounds(FIRST, FIRST + timedelta(days=DAYS - 1))
    assert await detect_anomalies(conn, "m-order", start=start, end=end, tz=NY, measure="sum") == []
    cur = await conn.execute("SELECT count(*) AS n FROM analytics_anomalies")
    assert await cur.fetchone() == {"n": 0}


async def test_re_detection_upserts_and_drops_days_no_longer_flagged(conn: Conn) -> None:
    await add_metric(conn, "m-order")
    values = normal_days()
    values[20] += 60.0
    values[40] += 200.0
    await add_daily_values(conn, "m-order", FIRST, values)
    start, end = day_bounds(FIRST, FIRST + timedelta(days=DAYS - 1))
    loose = await detect_anomalies(conn, "m-order", start=start, end=end, tz=NY, measure="sum")
    assert {a.date for a in loose} == {FIRST + timedelta(days=20), FIRST + timedelta(days=40)}
    strict = await detect_anomalies(
        conn, "m-order", start=start, end=end, tz=NY, measure="sum", threshold=20.0
    )
    assert [a.date for a in strict] == [FIRST + timedelta(days=40)]
    cur = await conn.execute("SELECT date, threshold FROM analytics_anomalies ORDER BY date")
    assert await cur.fetchall() == [{"date": FIRST + timedelta(days=40), "threshold": 20.0}]
    # Not storing leaves the table alone.
    await detect_anomalies(conn, "m-order", start=start, end=end, tz=NY, measure="sum", store=False)
    cur = await conn.execute("SELECT count(*) AS n FROM analytics_anomalies")
    assert await cur.fetchone() == {"n": 1}


async def test_short_ranges_and_bad_thresholds_are_refused(conn: Conn) -> None:
    await add_metric(conn, "m-order")
    start, end = day_bounds(FIRST, FIRST + timedelta(days=12))
    with pytest.raises(SeriesTooShortError, match=r"13 days.*at least 14"):
        await detect_anomalies(conn, "m-order", start=start, end=end, tz=NY)
    with pytest.raises(InvalidParameterError, match="threshold"):
        await detect_anomalies(conn, "m-order", start=start, end=end, tz=NY, threshold=0)
