"""Forecast and anomaly endpoints equal the analytics functions called directly.

The sandbox store holds three weeks, too short for a forecast, so these tests add a synthetic
metric with 120 days of daily buckets (weekly season, one spike) to their database copy.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest

from klaviyo_analytics.analytics import anomalies, forecast
from klaviyo_analytics.analytics.periods import DateRange
from tests.integration.api.conftest import STORE_TZ, Api

TODAY = date(2026, 6, 30)
SPIKE = date(2026, 6, 20)
METRIC = "SYNTH1"


def value_of(day: date) -> int:
    base = 100 + 30 * math.sin(2 * math.pi * day.weekday() / 7) + (day.toordinal() * 7919) % 11
    return int(base * (4 if day == SPIKE else 1))


@pytest.fixture
def synthetic(api: Api) -> str:
    zone = ZoneInfo(STORE_TZ)
    with psycopg.connect(api.db.conninfo) as conn:
        conn.execute(
            "INSERT INTO klaviyo_metrics (id, name) VALUES (%s, 'Synthetic Orders')", (METRIC,)
        )
        for offset in range(1, 121):
            day = TODAY - timedelta(days=offset)
            conn.execute(
                "INSERT INTO klaviyo_aggregated_metrics"
                " (metric_id, bucket_size, bucket_start, count, sum_value, unique_profiles)"
                " VALUES (%s, 'day', %s, %s, %s, %s)",
                (
                    METRIC,
                    datetime.combine(day, time(0), tzinfo=zone),
                    value_of(day),
                    value_of(day) * 2,
                    value_of(day),
                ),
            )
    return METRIC


async def test_forecast_equals_forecast_metric_and_validates_its_options(
    api: Api, synthetic: str
) -> None:
    body = await api.get_json(
        f"/api/analytics/forecast/{synthetic}", horizon=14, model="seasonal_naive", level=0.9
    )
    direct = await api.db.run(
        lambda c: forecast.forecast_metric(
            c,
            synthetic,
            tz=STORE_TZ,
            horizon_days=14,
            level=0.9,
            model="seasonal_naive",
            today=TODAY,
        )
    )
    assert body["model_name"] == direct.model_name == "seasonal_naive"
    assert [p["date"] for p in body["points"]] == [p.date.isoformat() for p in direct.points]
    assert [p["predicted"] for p in body["points"]] == pytest.approx(
        [p.predicted for p in direct.points]
    )
    assert body["points"][0]["date"] == TODAY.isoformat() and len(body["points"]) == 14
    bad = await api.get(f"/api/analytics/forecast/{synthetic}", level="1.5")
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["parameter"] == "level"
    placed = next(
        m["id"]
        for m in (await api.get_json("/api/metrics"))["metrics"]
        if m["name"] == "Placed Order"
    )
    short = await api.get(f"/api/analytics/forecast/{placed}")
    assert short.status_code == 422 and short.json()["error"]["code"] == "series_too_short"


async def test_anomalies_equal_detect_anomalies_and_find_the_spike(
    api: Api, synthetic: str
) -> None:
    body = await api.get_json(
        f"/api/analytics/anomalies/{synthetic}", start="2026-04-01", end="2026-06-29"
    )
    lo, hi = DateRange(date(2026, 4, 1), date(2026, 6, 29)).bounds(STORE_TZ)
    direct = await api.db.run(
        lambda c: anomalies.detect_anomalies(
            c, synthetic, start=lo, end=hi, tz=STORE_TZ, store=False
        ),
        readonly=True,
    )
    assert [(a["date"], a["direction"]) for a in body["anomalies"]] == [
        (a.date.isoformat(), a.direction) for a in direct
    ]
    assert (SPIKE.isoformat(), "spike") in [(a["date"], a["direction"]) for a in body["anomalies"]]
    short = await api.get(f"/api/analytics/anomalies/{synthetic}", range="last-7-days")
    assert short.status_code == 422
