"""Dashboard endpoints against a database filled by a sandbox sync: the figures are exactly
what the analytics layer returns when called directly."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from pydantic import TypeAdapter

from klaviyo_analytics.analytics import kpis, performance, timeseries
from klaviyo_analytics.analytics.periods import DateRange
from tests.integration.api.conftest import STORE_TZ, Api

# The sandbox's store ends 2026-07-01 00:00 UTC: 2026-06-30 in New York, its time zone.
TODAY = date(2026, 6, 30)
LAST_30 = DateRange(date(2026, 6, 1), TODAY)


def as_json(value: Any) -> Any:
    """Render analytics results the way the API does (pydantic, JSON mode)."""
    return TypeAdapter(type(value) if not isinstance(value, list) else list[Any]).dump_python(
        value, mode="json"
    )


async def direct(api: Api, fn: Any) -> Any:
    return await api.db.run(fn, readonly=True)


async def test_overview_equals_the_kpis_of_the_default_range_in_the_store_timezone(
    api: Api,
) -> None:
    response = await api.get("/api/overview")
    assert response.status_code == 200, response.text
    body = response.json()
    expected = await direct(api, lambda c: kpis.overview(c, LAST_30, STORE_TZ))
    assert body["source"] == "database" and response.headers["X-Data-Source"] == "database"
    assert body["timezone"] == STORE_TZ
    assert body["range"] == {"start": "2026-06-01", "end": "2026-06-30"}
    for name in ("revenue", "orders", "aov", "open_rate", "click_rate", "form_submissions"):
        change = getattr(expected, name)
        assert Decimal(body[name]["current"]) == change.current, name
        assert Decimal(body[name]["previous"]) == change.previous, name
        assert body[name]["change_pct"] == change.change_pct, name
    assert expected.orders.current > 0
    assert {k: Decimal(v) for k, v in body["revenue_by_channel"].items()} == (
        expected.revenue_by_channel
    )


@pytest.mark.parametrize(
    ("path", "call"),
    [
        ("/api/campaigns", performance.campaign_performance),
        ("/api/flows", performance.flow_performance),
        ("/api/forms", performance.form_performance),
        ("/api/segments", performance.segment_performance),
    ],
)
async def test_tables_equal_the_performance_functions(api: Api, path: str, call: Any) -> None:
    rng = DateRange(date(2026, 6, 10), date(2026, 6, 30))
    body = await api.get_json(path, start="2026-06-10", end="2026-06-30", limit=3, order="asc")
    table = await direct(api, lambda c: call(c, rng, STORE_TZ, descending=False, limit=3))
    assert body["total"] == table.total > 0
    assert body["rows"] == [as_json(r) for r in table.rows]
    assert body["limit"] == 3 and body["order"] == "asc"


async def test_tables_sort_page_and_search(api: Api) -> None:
    everything = await api.get_json("/api/campaigns", sort="name", order="asc", limit=1000)
    names = [r["name"] for r in everything["rows"]]
    assert names == sorted(names) and everything["total"] == len(names)
    second = await api.get_json("/api/campaigns", sort="name", order="asc", limit=1, offset=1)
    assert second["rows"][0]["name"] == names[1]
    word = names[0].split()[0]
    found = await api.get_json("/api/campaigns", search=word.lower())
    assert found["total"] >= 1 and all(word.lower() in r["name"].lower() for r in found["rows"])
    bad = await api.get("/api/campaigns", sort="nope")
    assert bad.status_code == 422 and "sort by one of" in bad.json()["error"]["message"]


async def test_flow_messages_and_an_unknown_flow(api: Api) -> None:
    flows = await api.get_json("/api/flows")
    flow_id = flows["rows"][0]["id"]
    body = await api.get_json(f"/api/flows/{flow_id}/messages")
    table = await direct(
        api, lambda c: performance.flow_message_performance(c, LAST_30, STORE_TZ, flow_id)
    )
    assert body["rows"] == [as_json(r) for r in table.rows] and body["total"] == table.total
    missing = await api.get("/api/flows/NOPE123/messages")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("path", "call"),
    [
        ("/api/charts/revenue", performance.revenue_by_day),
        ("/api/charts/distribution", performance.channel_distribution),
        ("/api/charts/engagement", performance.engagement_by_day),
        ("/api/charts/top-flows", performance.top_flows),
        ("/api/charts/top-segments", performance.top_segments),
        ("/api/charts/top-forms", performance.top_forms),
    ],
)
async def test_charts_equal_the_chart_functions(api: Api, path: str, call: Any) -> None:
    body = await api.get_json(path, range="last-7-days")
    week = DateRange(date(2026, 6, 24), TODAY)
    points = await direct(api, lambda c: call(c, week, STORE_TZ))
    assert body["range"] == {"start": "2026-06-24", "end": "2026-06-30"}
    assert body["points"] == [as_json(p) for p in points]
    assert points, path


async def test_account_reports_the_synced_account_and_its_freshness(api: Api) -> None:
    body = await api.get_json("/api/account")
    assert body["source"] == "database"
    assert body["name"] == "Sandbox Outfitters"
    assert (body["timezone"], body["currency"]) == (STORE_TZ, "USD")
    assert body["last_sync_at"] is not None and body["fresh"] is True
    assert body["stale_after_minutes"] == 1440


async def test_metrics_lists_the_synced_metrics(api: Api) -> None:
    body = await api.get_json("/api/metrics")
    names = {m["name"] for m in body["metrics"]}
    assert {"Placed Order", "Opened Email"} <= names and body["source"] == "database"
    assert all(set(m) == {"id", "name", "integration"} for m in body["metrics"])


async def placed_order(api: Api) -> str:
    body = await api.get_json("/api/metrics")
    return str(next(m["id"] for m in body["metrics"] if m["name"] == "Placed Order"))


async def test_timeseries_decomposition_and_correlation_equal_the_series_functions(
    api: Api,
) -> None:
    metric = await placed_order(api)
    opened = next(
        m["id"]
        for m in (await api.get_json("/api/metrics"))["metrics"]
        if m["name"] == "Opened Email"
    )
    lo, hi = LAST_30.bounds(STORE_TZ)
    body = await api.get_json(f"/api/analytics/timeseries/{metric}", measure="sum")
    series = await direct(
        api,
        lambda c: timeseries.metric_series(c, metric, start=lo, end=hi, tz=STORE_TZ, measure="sum"),
    )
    assert [p["value"] for p in body["points"]] == series.values
    assert len(body["points"]) == 30 and body["downsampled"] is False
    small = await api.get_json(f"/api/analytics/timeseries/{metric}", max_points=10)
    assert len(small["points"]) == 10 and small["downsampled"] is True

    parts = await api.get_json(f"/api/analytics/decomposition/{metric}")
    expected = timeseries.decompose(
        await direct(
            api, lambda c: timeseries.metric_series(c, metric, start=lo, end=hi, tz=STORE_TZ)
        )
    )
    assert parts["trend"] == pytest.approx(expected.trend)
    short = await api.get(f"/api/analytics/decomposition/{metric}", range="last-7-days")
    assert short.status_code == 422 and short.json()["error"]["code"] == "series_too_short"

    corr = await api.get_json("/api/analytics/correlation", metric1=metric, metric2=opened)
    direct_corr = await direct(
        api, lambda c: timeseries.correlation(c, metric, opened, start=lo, end=hi, tz=STORE_TZ)
    )
    assert corr["r"] == pytest.approx(direct_corr.r) and corr["n"] == direct_corr.n == 30
    unknown = await api.get("/api/analytics/timeseries/NOPE42")
    assert unknown.status_code == 404


def test_dataclass_rows_render_like_the_api(api: Api) -> None:
    row = performance.ChannelShare("email_campaign", Decimal("1.50"), 2, 50.0)
    assert as_json(row) == {**asdict(row), "revenue": "1.50"}
