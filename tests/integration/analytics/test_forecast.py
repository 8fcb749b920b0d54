"""Forecasts of stored metrics: the series read, the choice stored, the refusals."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from klaviyo_analytics.analytics.errors import (
    InvalidParameterError,
    SeriesTooShortError,
    UnknownMetricError,
)
from klaviyo_analytics.analytics.forecast import (
    ForecastOptions,
    forecast_metric,
    forecast_orders,
    forecast_revenue,
    refresh_forecasts,
    series_key,
    stored_forecast,
)
from klaviyo_analytics.db.pool import Conn
from klaviyo_analytics.db.repos.forecasts import ForecastRepository, PredictionRow
from tests.integration.analytics.seriesdata import (
    NY,
    add_daily_values,
    add_metric,
    conn_fixture,  # noqa: F401
)

FIRST = date(2026, 1, 5)
SEASON = np.array([0.0, 8.0, 15.0, 20.0, 10.0, -25.0, -28.0])


def revenue(n: int, seed: int = 1) -> list[float]:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return list(200.0 + 0.6 * t + SEASON[t % 7] + rng.normal(0.0, 5.0, n))


async def test_a_revenue_forecast_is_stored_with_its_predictions_and_scores(conn: Conn) -> None:
    await add_metric(conn, "m-order", "Placed Order")
    await add_daily_values(conn, "m-order", FIRST, revenue(70))
    today = FIRST + timedelta(days=70)
    forecast = await forecast_revenue(conn, tz=NY, horizon_days=10, level=0.9, today=today)
    assert forecast.measure == "sum" and forecast.metric_id == "m-order"
    assert forecast.train_start == FIRST and forecast.train_end == today - timedelta(days=1)
    assert [p.date for p in forecast.points] == [today + timedelta(days=i) for i in range(10)]
    assert all(p.lower < p.predicted < p.upper for p in forecast.points)
    truth = 200.0 + 0.6 * np.arange(70, 80) + SEASON[np.arange(70, 80) % 7]
    assert np.mean(np.abs(np.array([p.predicted for p in forecast.points]) - truth)) < 10
    assert {s.model_name for s in forecast.backtest} == {"seasonal_naive", "ets", "arima"}

    cur = await conn.execute(
        "SELECT series_key, model_name, train_start, horizon_days FROM forecast_models WHERE id = %s",
        (forecast.model_id,),
    )
    assert await cur.fetchone() == {
        "series_key": series_key("m-order", "sum"),
        "model_name": forecast.model_name,
        "train_start": FIRST,
        "horizon_days": 10,
    }
    stored = await ForecastRepository().predictions(conn, forecast.model_id)
    assert [(r.date, round(r.predicted, 6)) for r in stored] == [
        (p.date, round(p.predicted, 6)) for p in forecast.points
    ]
    cur = await conn.execute(
        "SELECT model_name, folds, coverage FROM model_performance WHERE model_id = %s"
        " ORDER BY model_name",
        (forecast.model_id,),
    )
    rows = await cur.fetchall()
    assert [r["model_name"] for r in rows] == ["arima", "ets", "seasonal_naive"]
    assert all(r["folds"] == 3 for r in rows)
    cur = await conn.execute(
        "SELECT DISTINCT level FROM forecast_predictions WHERE model_id = %s", (forecast.model_id,)
    )
    assert [float(r["level"]) for r in await cur.fetchall()] == [0.9]


async def test_an_explicit_model_is_used_and_counts_are_never_negative(conn: Conn) -> None:
    await add_metric(conn, "m-order", "Placed Order")
    # Few orders a day, falling: a naive extrapolation would dip below zero.
    rng = np.random.default_rng(3)
    counts = [max(0, int(v)) for v in np.linspace(6, 1, 42) + rng.normal(0, 1, 42)]
    await add_daily_values(conn, "m-order", FIRST, [1.0] * 42)
    await conn.execute("DELETE FROM klaviyo_aggregated_metrics")
    await conn.execute(
        "INSERT INTO klaviyo_aggregated_metrics (metric_id, bucket_size, bucket_start, count)"
        " SELECT 'm-order', 'day', (d::date)::timestamp AT TIME ZONE %s, c"
        " FROM unnest(%s::date[], %s::int[]) AS u(d, c)",
        (NY, [FIRST + timedelta(days=i) for i in range(42)], counts),
    )
    forecast = await forecast_orders(
        conn, tz=NY, model="ets", horizon_days=60, today=FIRST + timedelta(days=42)
    )
    assert forecast.model_name == "ets" and [s.model_name for s in forecast.backtest] == ["ets"]
    assert all(p.lower >= 0 and p.predicted >= 0 for p in forecast.points)


async def test_less_than_four_weeks_of_history_is_refused(conn: Conn) -> None:
    await add_metric(conn, "m-order", "Placed Order")
    # A year of history asked for, but the metric only began 27 days ago.
    await add_daily_values(conn, "m-order", FIRST, revenue(27))
    with pytest.raises(SeriesTooShortError, match=r"27 days of history.*at least 28"):
        await forecast_metric(conn, "m-order", tz=NY, today=FIRST + timedelta(days=27))
    cur = await conn.execute("SELECT count(*) AS n FROM forecast_models")
    assert await cur.fetchone() == {"n": 0}


async def test_unknown_metrics_and_bad_options_are_refused(conn: Conn) -> None:
    with pytest.raises(UnknownMetricError):
        await forecast_metric(conn, "nope", tz=NY, today=FIRST)
    with pytest.raises(UnknownMetricError, match="Placed Order"):
        await forecast_revenue(conn, tz=NY, today=FIRST)
    await add_metric(conn, "m-order")
    for options in (
        {"horizon_days": 400},
        {"level": 0.3},
        {"history_days": 7},
        {"measure": "unique"},
    ):
        with pytest.raises(InvalidParameterError):
            await forecast_metric(conn, "m-order", tz=NY, today=FIRST, **options)  # type: ignore[arg-type]


async def test_the_refresh_stores_todays_forecasts_once_and_keeps_asked_options_current(
    conn: Conn,
) -> None:
    await add_metric(conn, "m-order", "Placed Order")
    await add_daily_values(conn, "m-order", FIRST, revenue(70))
    yesterday = FIRST + timedelta(days=69)
    today = yesterday + timedelta(days=1)
    # An admin stored one with other options yesterday.
    await forecast_metric(
        conn, "m-order", tz=NY, measure="count", horizon_days=7, level=0.8, today=yesterday
    )

    first = await refresh_forecasts(conn, tz=NY, today=today)
    assert (first.fitted, first.current, first.failed) == (3, 0, {})
    for measure, horizon, level in (("sum", 14, 0.95), ("count", 30, 0.95), ("count", 7, 0.8)):
        options = ForecastOptions(measure, horizon, level)  # type: ignore[arg-type]
        found = await stored_forecast(conn, "m-order", options, today=today)
        assert found is not None, (measure, horizon, level)
        assert found.train_end == yesterday and len(found.points) == horizon

    again = await refresh_forecasts(conn, tz=NY, today=today)
    assert (again.fitted, again.current, again.failed) == (0, 3, {})


async def test_the_refresh_reports_a_series_it_cannot_forecast_and_fits_the_others(
    conn: Conn,
) -> None:
    await add_metric(conn, "m-order", "Placed Order")
    await add_daily_values(conn, "m-order", FIRST, revenue(70))
    await add_metric(conn, "m-new", "New")
    await add_daily_values(conn, "m-new", FIRST + timedelta(days=50), revenue(20))
    today = FIRST + timedelta(days=70)
    repo = ForecastRepository()
    # Stored earlier for a metric with too little history now, and for one no longer synced.
    for key in (series_key("m-new", "count"), series_key("m-gone", "sum")):
        model_id = await repo.save_model(
            conn,
            series_key=key,
            model_name="ets",
            parameters={"requested": {"model": "auto", "history_days": 365}},
            train_start=FIRST,
            train_end=today - timedelta(days=3),
            horizon_days=7,
        )
        await repo.save_predictions(
            conn, model_id, [PredictionRow(today, 1.0, 0.0, 2.0)], level=0.9
        )

    outcome = await refresh_forecasts(conn, tz=NY, today=today)
    assert outcome.fitted == 2 and outcome.current == 0
    assert sorted(k.split(" ")[0] for k in outcome.failed) == [
        series_key("m-gone", "sum"),
        series_key("m-new", "count"),
    ]
    assert all(why for why in outcome.failed.values())
