"""Metric series from the pre-aggregates: gaps, DST, downsampling, correlation, synced data."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy as np
import psycopg
import pytest

from klaviyo_analytics.analytics.errors import InvalidParameterError, UnknownMetricError
from klaviyo_analytics.analytics.timeseries import correlation, metric_series
from klaviyo_analytics.db.pool import Conn
from klaviyo_analytics.db.repos.events import Event
from klaviyo_analytics.sandbox.server import SandboxServer
from tests.fixtures.sync import sync_service
from tests.integration.analytics.seriesdata import (
    NY,
    add_daily_values,
    add_events,
    add_metric,
    conn_fixture,  # noqa: F401
    day_bounds,
    local_noon,
)


async def test_a_day_without_events_is_a_zero_bucket(conn: Conn) -> None:
    await add_metric(conn, "m-order", "Placed Order")
    first = date(2026, 2, 2)
    await add_events(
        conn,
        [
            Event("a", local_noon(first), "m-order", value=Decimal("10")),
            Event("b", local_noon(first), "m-order", value=Decimal("5")),
            Event("c", local_noon(first + timedelta(days=2)), "m-order", value=Decimal("7")),
        ],
    )
    start, end = day_bounds(first - timedelta(days=1), first + timedelta(days=3))
    counts = await metric_series(conn, "m-order", start=start, end=end, tz=NY)
    sums = await metric_series(conn, "m-order", start=start, end=end, tz=NY, measure="sum")
    days = [p.at.date() for p in counts.points]
    assert days == [first + timedelta(days=k) for k in range(-1, 4)]
    assert counts.values == [0, 2, 0, 1, 0]
    assert sums.values == [0, 15, 0, 7, 0]
    assert all(p.at.hour == 0 and p.at.utcoffset() == timedelta(hours=-5) for p in counts.points)
    assert not counts.downsampled


@pytest.mark.parametrize(
    ("day", "hours"), [(date(2026, 3, 8), 23), (date(2026, 11, 1), 25), (date(2026, 3, 9), 24)]
)
async def test_the_hourly_grid_follows_dst_in_the_store_zone(
    conn: Conn, day: date, hours: int
) -> None:
    await add_metric(conn, "m-view")
    # One event in every UTC hour of the local day: each must land in its own local hour.
    start, end = day_bounds(day, day)
    stamps = [
        start + timedelta(hours=h, minutes=30)
        for h in range(int((end - start) / timedelta(hours=1)))
    ]
    await add_events(conn, [Event(f"v{i}", t, "m-view") for i, t in enumerate(stamps)])
    series = await metric_series(conn, "m-view", start=start, end=end, tz=NY, interval="hour")
    assert len(series.points) == hours
    assert series.values == [1.0] * hours
    # Same-zone datetimes compare by wall clock (fold ignored): compare instants instead.
    assert len({p.at.timestamp() for p in series.points}) == hours
    assert [p.at.hour for p in series.points].count(1) == (2 if hours == 25 else 1)
    daily = await metric_series(conn, "m-view", start=start, end=end, tz=NY)
    assert daily.values == [float(hours)]


async def test_weekly_buckets_start_on_local_mondays_and_whole_weeks_are_read(conn: Conn) -> None:
    await add_metric(conn, "m-order")
    await add_daily_values(conn, "m-order", date(2026, 1, 5), [1.0] * 21)  # Mon 5 Jan .. Sun 25 Jan
    start, end = day_bounds(date(2026, 1, 7), date(2026, 1, 20))
    weekly = await metric_series(conn, "m-order", start=start, end=end, tz=NY, interval="week")
    assert [p.at.date() for p in weekly.points] == [
        date(2026, 1, 5),
        date(2026, 1, 12),
        date(2026, 1, 19),
    ]
    assert weekly.values == [7.0, 7.0, 7.0]


async def test_max_points_downsamples_with_lttb_keeping_the_peak(conn: Conn) -> None:
    await add_metric(conn, "m-order")
    values = [1.0] * 90
    values[40] = 50.0
    await add_daily_values(conn, "m-order", date(2026, 1, 1), values)
    start, end = day_bounds(date(2026, 1, 1), date(2026, 3, 31))
    series = await metric_series(
        conn, "m-order", start=start, end=end, tz=NY, measure="sum", max_points=10
    )
    assert series.downsampled and len(series.points) == 10
    assert 50.0 in series.values
    assert series.points[0].at.date() == date(2026, 1, 1)
    assert series.points[-1].at.date() == date(2026, 3, 31)


async def test_an_unknown_metric_is_not_found(conn: Conn) -> None:
    start, end = day_bounds(date(2026, 1, 1), date(2026, 1, 2))
    with pytest.raises(UnknownMetricError, match="nope"):
        await metric_series(conn, "nope", start=start, end=end, tz=NY)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"interval": "month"}, "interval"),
        ({"measure": "avg"}, "measure"),
        ({"max_points": 2}, "max_points"),
        ({"tz": "Mars/Olympus"}, "Mars/Olympus"),
        ({"end": datetime(2025, 12, 1, tzinfo=UTC)}, "not before"),
        ({"start": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"interval": "hour", "start": datetime(2000, 1, 1, tzinfo=UTC)}, "buckets"),
    ],
)
async def test_bad_parameters_are_refused(
    conn: Conn, changes: dict[str, object], message: str
) -> None:
    await add_metric(conn, "m-order")
    args: dict[str, object] = {
        "start": datetime(2026, 1, 1, tzinfo=UTC),
        "end": datetime(2026, 2, 1, tzinfo=UTC),
        "tz": NY,
    } | changes
    with pytest.raises(InvalidParameterError, match=message) as caught:
        await metric_series(conn, "m-order", **args)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)


async def test_correlation_is_one_with_itself_and_near_zero_with_an_independent_metric(
    conn: Conn,
) -> None:
    rng = np.random.default_rng(2026)
    await add_metric(conn, "m-a")
    await add_metric(conn, "m-b")
    await add_metric(conn, "m-flat")
    first = date(2026, 1, 1)
    await add_daily_values(conn, "m-a", first, list(rng.uniform(10, 100, 365)))
    await add_daily_values(conn, "m-b", first, list(rng.uniform(10, 100, 365)))
    await add_daily_values(conn, "m-flat", first, [5.0] * 365)
    start, end = day_bounds(first, first + timedelta(days=364))
    kw = {"start": start, "end": end, "tz": NY, "measure1": "sum", "measure2": "sum"}
    itself = await correlation(conn, "m-a", "m-a", **kw)  # type: ignore[arg-type]
    other = await correlation(conn, "m-a", "m-b", **kw)  # type: ignore[arg-type]
    flat = await correlation(conn, "m-a", "m-flat", **kw)  # type: ignore[arg-type]
    assert itself.r == pytest.approx(1.0) and itself.n == 365
    assert itself.p_value is not None and itself.p_value < 1e-10
    assert other.r is not None and abs(other.r) < 0.2
    assert other.p_value is not None and other.p_value > 0.01
    assert flat.r is None and flat.p_value is None and flat.n == 365


async def test_placed_order_sum_equals_the_raw_events_after_a_sandbox_sync(
    db_conninfo: str, sandbox: SandboxServer
) -> None:
    async with sync_service(db_conninfo, sandbox) as service:
        await service.sync_all()
        tz = await service.timezone()
    async with await psycopg.AsyncConnection.connect(
        db_conninfo, row_factory=psycopg.rows.dict_row
    ) as conn:
        cur = await conn.execute(
            "SELECT m.id, min(e.timestamp) AS lo, max(e.timestamp) AS hi, sum(e.value) AS total,"
            " count(*) AS n FROM klaviyo_events e JOIN klaviyo_metrics m ON m.id = e.metric_id"
            " WHERE m.name = 'Placed Order' GROUP BY m.id"
        )
        row = await cur.fetchone()
        assert row is not None and row["n"] > 0
        end = row["hi"] + timedelta(seconds=1)
        sums = await metric_series(conn, row["id"], start=row["lo"], end=end, tz=tz, measure="sum")
        counts = await metric_series(conn, row["id"], start=row["lo"], end=end, tz=tz)
        hourly = await metric_series(
            conn, row["id"], start=row["lo"], end=end, tz=tz, interval="hour", measure="sum"
        )
    assert sum(sums.values) == pytest.approx(float(row["total"]), rel=1e-9)
    assert sum(hourly.values) == pytest.approx(float(row["total"]), rel=1e-9)
    assert sum(counts.values) == row["n"]
    assert 0.0 not in sums.values or len(sums.points) > 1
