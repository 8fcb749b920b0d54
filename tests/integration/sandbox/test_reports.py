"""Reporting numbers agree with the events the sandbox serves."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import httpx

from klaviyo_analytics.sandbox import catalog as c
from klaviyo_analytics.sandbox.generator import KIND_CAMPAIGN, KIND_FLOW, StoreGenerator
from klaviyo_analytics.sandbox.reports import resolve_timeframe

TIMEFRAME = {"start": "2026-06-09T00:00:00", "end": "2026-07-01T00:00:00"}


def _body(kind: str, **attributes: Any) -> dict[str, Any]:
    return {"data": {"type": kind, "attributes": attributes}}


def test_campaign_values_agree_with_events(
    api: httpx.Client, sandbox_generator: StoreGenerator
) -> None:
    gen = sandbox_generator
    order = gen.catalog.metrics[c.PLACED_ORDER]
    response = api.post("/api/campaign-values-reports", json=_body(
        "campaign-values-report", statistics=["opens", "clicks", "recipients", "conversions",
                                              "conversion_value", "open_rate"],
        timeframe=TIMEFRAME, conversion_metric_id=order.id))  # fmt: skip
    assert response.status_code == 200, response.text
    zone = ZoneInfo(gen.options.timezone)
    lo, hi = resolve_timeframe(TIMEFRAME, zone, gen.end_ts)
    ev = gen.events_between(lo, min(hi, gen.end_ts + 1))  # nothing after "now" exists yet
    results = response.json()["data"]["attributes"]["results"]
    assert len(results) == len(gen.catalog.campaigns)
    for result in results:
        campaign = gen.catalog.campaign_by_id[result["groupings"]["campaign_id"]]
        mine = (ev.kind == KIND_CAMPAIGN) & (ev.source == campaign.index)
        stats = result["statistics"]
        opened = c.OPENED_EMAIL
        assert stats["opens"] == int((mine & (ev.metric == opened)).sum())
        clicks = (c.CLICKED_EMAIL, c.CLICKED_SMS)
        assert stats["clicks"] == int(
            (mine & ((ev.metric == clicks[0]) | (ev.metric == clicks[1]))).sum()
        )
        orders = mine & (ev.metric == c.PLACED_ORDER)
        assert stats["conversions"] == int(orders.sum())
        assert stats["conversion_value"] == round(int(ev.value[orders].sum()) / 100, 2)
        if campaign.channel == "email" and stats["recipients"] >= 200:
            assert 0.2 <= stats["open_rate"] <= 0.45


def test_flow_values_agree_with_events(
    api: httpx.Client, sandbox_generator: StoreGenerator
) -> None:
    gen = sandbox_generator
    order = gen.catalog.metrics[c.PLACED_ORDER]
    response = api.post("/api/flow-values-reports", json=_body(
        "flow-values-report", statistics=["recipients", "opens"], timeframe=TIMEFRAME,
        conversion_metric_id=order.id))  # fmt: skip
    lo, hi = resolve_timeframe(TIMEFRAME, ZoneInfo(gen.options.timezone), gen.end_ts)
    ev = gen.events_between(lo, min(hi, gen.end_ts + 1))  # nothing after "now" exists yet
    results = response.json()["data"]["attributes"]["results"]
    by_id = {m.id: m for m in gen.catalog.flow_messages}
    total_opens = 0
    for result in results:
        message = by_id[result["groupings"]["flow_message_id"]]
        mine = (ev.kind == KIND_FLOW) & (ev.source == message.index)
        received = (ev.metric == c.RECEIVED_EMAIL) | (ev.metric == c.RECEIVED_SMS)
        bounced = ev.metric == c.BOUNCED_EMAIL
        assert result["statistics"]["recipients"] == int((mine & (received | bounced)).sum())
        assert result["statistics"]["opens"] == int((mine & (ev.metric == c.OPENED_EMAIL)).sum())
        total_opens += result["statistics"]["opens"]
    assert total_opens > 0


def test_metric_aggregate_counts_agree_with_count_events(
    api: httpx.Client, sandbox_generator: StoreGenerator
) -> None:
    gen = sandbox_generator
    metric = gen.catalog.metrics[c.VIEWED_PRODUCT]
    response = api.post("/api/metric-aggregates", json=_body(
        "metric-aggregate", metric_id=metric.id, measurements=["count"], interval="day",
        timezone="UTC", filter=["greater-or-equal(datetime,2026-06-20T00:00:00)",
                                "less-than(datetime,2026-06-27T00:00:00)"]))  # fmt: skip
    assert response.status_code == 200, response.text
    attributes = response.json()["data"]["attributes"]
    counts = attributes["data"][0]["measurements"]["count"]
    assert len(attributes["dates"]) == len(counts) == 7
    start = 1781913600  # 2026-06-20T00:00:00Z
    for day, count in enumerate(counts):
        lo = start + day * 86_400
        assert count == gen.count_events(lo, lo + 86_400, metric_id=metric.id)


def test_form_values_agree_with_events(
    api: httpx.Client, sandbox_generator: StoreGenerator
) -> None:
    gen = sandbox_generator
    response = api.post("/api/form-values-reports", json=_body(
        "form-values-report", statistics=["viewed_form", "submits"], timeframe=TIMEFRAME))  # fmt: skip
    lo, hi = resolve_timeframe(TIMEFRAME, ZoneInfo(gen.options.timezone), gen.end_ts)
    ev = gen.events_between(lo, min(hi, gen.end_ts + 1))  # nothing after "now" exists yet
    results = response.json()["data"]["attributes"]["results"]
    submits = sum(r["statistics"]["submits"] for r in results)
    assert submits == int((ev.metric == c.SUBMITTED_FORM).sum()) > 0


def test_reports_refuse_unknown_statistics(api: httpx.Client) -> None:
    response = api.post("/api/form-values-reports", json=_body(
        "form-values-report", statistics=["nonsense"], timeframe={"key": "last_7_days"}))  # fmt: skip
    assert response.status_code == 400
    assert response.json()["errors"][0]["source"] == {"parameter": "statistics"}
