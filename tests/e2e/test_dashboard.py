"""The dashboard in headless Chromium against a real server over a sandbox-synced database."""

from __future__ import annotations

import csv
import io
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from klaviyo_analytics.sandbox.config import FaultOptions, SandboxConfig
from klaviyo_analytics.sandbox.server import SandboxServer
from klaviyo_analytics.sync.registry import STREAMS
from tests.e2e.conftest import (
    DASHBOARD_STORE,
    PHONE,
    Dashboard,
    DashboardFactory,
    SessionFactory,
    screenshot,
    wait_until_loaded,
)

RANGED_PANELS = (
    "/api/overview",
    "/api/charts/revenue",
    "/api/charts/distribution",
    "/api/charts/engagement",
    "/api/charts/top-flows",
    "/api/charts/top-segments",
    "/api/charts/top-forms",
    "/api/campaigns",
)
MONEY = ("revenue", "attributed_revenue", "net_revenue", "refunds", "aov")
RATES = ("conversion_rate", "open_rate", "click_rate")
COUNTS = ("orders", "subscribers", "form_submissions")


def half_up(value: Decimal, places: str) -> Decimal:
    return value.quantize(Decimal(places), ROUND_HALF_UP)


def shown(kpi: str, value: str) -> str:
    """What a KPI card must show for an API value (en-US, as the page formats it)."""
    v = Decimal(value)
    if kpi in MONEY:
        return f"${half_up(v, '0.01'):,.2f}"
    if kpi in RATES:
        return f"{half_up(v * 100, '0.01'):,.2f}%"
    return f"{v:,.0f}"


def shown_change(pct: float | None) -> str:
    if pct is None:
        return "n/a"
    arrow = "▲" if pct > 0 else "▼" if pct < 0 else "■"
    return f"{arrow} {half_up(abs(Decimal(str(pct))), '0.1')}%"


def card_texts(page: Any) -> dict[str, dict[str, str]]:
    cards = {}
    for card in page.query_selector_all("[data-kpi]"):
        cards[card.get_attribute("data-kpi")] = {
            "value": card.query_selector('[data-role="value"]').inner_text(),
            "change": card.query_selector('[data-role="change"]').inner_text(),
            "previous": card.query_selector('[data-role="previous"]').inner_text(),
        }
    return cards


def assert_cards_match(page: Any, overview: dict[str, Any]) -> None:
    cards = card_texts(page)
    assert set(cards) == set(MONEY + RATES + COUNTS)
    for kpi, card in cards.items():
        figure = overview["attributed"]["revenue"] if kpi == "attributed_revenue" else overview[kpi]
        assert card["value"] == shown(kpi, figure["current"]), kpi
        assert card["previous"] == f"vs {shown(kpi, figure['previous'])}", kpi
        assert card["change"] == shown_change(figure["change_pct"]), kpi


def test_page_shows_every_panel_with_data_at_desktop_and_phone_widths(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    for name, viewport in (("dashboard-desktop", None), ("dashboard-phone", PHONE)):
        session = open_page(dashboard, **({"viewport": viewport} if viewport else {}))
        page = session.page
        wait_until_loaded(page)
        for panel in ("overview", "revenue", "distribution", "engagement", "top", "table", "sync"):
            state = page.get_attribute(f'[data-panel="{panel}"]', "data-state")
            assert state == "ready", f"{panel} is {state}"
        assert page.inner_text("#account-name") == DASHBOARD_STORE.organization_name
        assert page.inner_text("#freshness").startswith("Synced ")
        assert page.get_attribute("#freshness", "data-state") == "fresh"
        # Charts drew real traces (plotly adds one .trace group per series).
        for chart in ("revenue-chart", "distribution-chart", "engagement-chart", "top-chart"):
            assert page.query_selector(f"#{chart} .plot .main-svg"), chart
        assert len(page.query_selector_all("#perf-table tbody tr[data-id]")) > 0
        assert len(page.query_selector_all("#sync-table tbody tr[data-stream]")) == len(STREAMS)
        page.wait_for_timeout(400)  # let chart transitions settle before the picture
        screenshot(page, name)
        session.assert_clean()


def test_controls_are_labelled_and_reachable_by_keyboard(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    session = open_page(dashboard)
    page = session.page
    wait_until_loaded(page)
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('button, input, select')]
            .filter(el => el.offsetParent !== null)
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                          && !el.textContent.trim())
            .map(el => el.outerHTML.slice(0, 80))"""
    )
    assert unlabelled == []
    reached = []
    for _ in range(12):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
    assert {"range-preset", "refresh", "forecast-toggle"} <= set(reached)
    session.assert_clean()


def test_each_kpi_card_shows_what_the_overview_returns(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    session = open_page(dashboard)
    wait_until_loaded(session.page)
    overview = dashboard.get_json("/api/overview", range="last-30-days")
    assert Decimal(overview["revenue"]["current"]) > 0
    assert_cards_match(session.page, overview)
    session.assert_clean()


def test_changing_the_range_refetches_every_panel_and_the_numbers_change(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    session = open_page(dashboard)
    page = session.page
    wait_until_loaded(page)
    before = card_texts(page)
    session.requests.clear()
    page.select_option("#range-preset", "last-7-days")
    wait_until_loaded(page)
    calls = session.api_requests()
    for path in RANGED_PANELS:
        assert any(f"{path}?" in u and "range=last-7-days" in u for u in calls), path
    after = card_texts(page)
    assert after["revenue"] != before["revenue"] and after["orders"] != before["orders"]
    assert_cards_match(page, dashboard.get_json("/api/overview", range="last-7-days"))
    assert page.url.endswith("#range=last-7-days")

    # A custom range: both dates are sent, and every panel follows.
    session.requests.clear()
    page.select_option("#range-preset", "custom")
    page.fill("#range-start", "2026-05-01")
    page.fill("#range-end", "2026-05-31")
    page.click("#range-apply")
    wait_until_loaded(page)
    calls = session.api_requests()
    for path in RANGED_PANELS:
        assert any(
            f"{path}?" in u and "start=2026-05-01" in u and "end=2026-05-31" in u for u in calls
        ), path
    assert_cards_match(
        page, dashboard.get_json("/api/overview", start="2026-05-01", end="2026-05-31")
    )
    assert "May 1, 2026 \u2013 May 31, 2026" in page.inner_text("#range-label")
    session.assert_clean()


def table_names(page: Any) -> list[str]:
    return [c.inner_text() for c in page.query_selector_all('#perf-table td[data-col="name"]')]


def test_campaigns_table_sorts_searches_and_exports_csv(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    session = open_page(dashboard, path="/#range=last-90-days")
    page = session.page
    wait_until_loaded(page)
    api = dashboard.get_json("/api/campaigns", range="last-90-days", limit=1000)
    assert table_names(page) == [r["name"] for r in api["rows"]]  # by revenue, descending
    assert len(api["rows"]) >= 3

    page.click('#perf-table th button[data-sort="name"]')
    page.wait_for_selector('#perf-table th[aria-sort="ascending"] button[data-sort="name"]')
    wait_until_loaded(page)
    by_name = dashboard.get_json("/api/campaigns", range="last-90-days", sort="name", order="asc")
    assert table_names(page) == [r["name"] for r in by_name["rows"]]
    page.click('#perf-table th button[data-sort="name"]')
    page.wait_for_selector('#perf-table th[aria-sort="descending"] button[data-sort="name"]')
    wait_until_loaded(page)
    assert table_names(page) == [r["name"] for r in reversed(by_name["rows"])]

    word = "sms"
    expected = [r for r in by_name["rows"] if word in r["name"].lower()]
    assert 0 < len(expected) < len(by_name["rows"])
    page.fill("#table-search", word.upper())
    page.wait_for_selector(f'#table-sub:text-matches("^{len(expected)} campaigns? ·")')
    assert sorted(table_names(page)) == sorted(r["name"] for r in expected)

    with page.expect_download() as info:
        page.click("#table-export")
    download = info.value
    assert download.suggested_filename == "campaigns_last-90-days.csv"
    text = Path(download.path()).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    wanted = dashboard.get_json(
        "/api/campaigns", range="last-90-days", sort="name", order="desc", search=word, limit=1000
    )["rows"]
    assert [r["id"] for r in rows] == [r["id"] for r in wanted]
    for got, want in zip(rows, wanted, strict=True):
        assert got["name"] == want["name"]
        assert Decimal(got["revenue"]) == Decimal(want["revenue"])
        # SMS has no open rate: an empty cell, not 0.
        missing = want["open_rate"] is None
        assert (
            (got["open_rate"] == "")
            if missing
            else (Decimal(got["open_rate"]) == Decimal(want["open_rate"]))
        )
    session.assert_clean()


def test_forecast_toggle_draws_the_band_and_anomaly_markers(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    session = open_page(dashboard, path="/#range=last-90-days")
    page = session.page
    wait_until_loaded(page)
    page.check("#forecast-toggle")
    page.wait_for_selector('[data-panel="revenue"][data-state="ready"]', timeout=120_000)
    page.wait_for_selector("#forecast-note:not([hidden])")
    names = page.evaluate("document.querySelector('#revenue-chart .plot').data.map(t => t.name)")
    assert "Forecast" in names and "95% interval" in names
    metric = next(
        m["id"]
        for m in dashboard.get_json("/api/metrics")["metrics"]
        if m["name"] == "Placed Order"
    )
    found = dashboard.get_json(
        f"/api/analytics/anomalies/{metric}", range="last-90-days", measure="sum"
    )["anomalies"]
    note = page.inner_text("#forecast-note")
    assert "Forecast of the next 14 days" in note
    if found:
        assert "Anomaly" in names and f"{len(found)} unusual day" in note
    else:
        assert "No unusual days" in note
    forecast_x = page.evaluate(
        "document.querySelector('#revenue-chart .plot').data.find(t => t.name === 'Forecast').x"
    )
    assert len(forecast_x) == 14 and forecast_x[0] == "2026-06-30"
    screenshot(page, "dashboard-forecast")
    session.assert_clean()


def test_a_sync_started_from_the_panel_shows_progress_then_the_finished_run(
    make_dashboard: DashboardFactory, dashboard_template: str, open_page: SessionFactory
) -> None:
    # The same store, answering slowly, so that the sync runs long enough to be watched.
    config = SandboxConfig(
        store=DASHBOARD_STORE, rate_limits=False, faults=FaultOptions(latency_ms=120)
    )
    with SandboxServer(config) as slow:
        dash = make_dashboard(template=dashboard_template, sandbox=slow)
        session = open_page(dash)
        page = session.page
        wait_until_loaded(page)
        before = dash.get_json("/api/sync/runs")["total"]
        page.evaluate(
            """() => {
                window.__phases = [];
                const el = document.getElementById('sync-progress');
                new MutationObserver(() => window.__phases.push(
                    [el.dataset.phase, el.querySelectorAll('.live').length]))
                  .observe(el, {attributes: true, childList: true, subtree: true});
            }"""
        )
        page.click("#sync-all")
        page.wait_for_selector('#sync-progress[data-phase="running"]')
        assert page.is_disabled("#sync-all")
        page.wait_for_selector('#sync-progress[data-phase="finished"]', timeout=120_000)
        phases = page.evaluate("window.__phases")
        assert any(p == "running" and live > 0 for p, live in phases), phases
        outcome = page.inner_text("#sync-progress")
        assert "Sync finished" in outcome
        after = dash.get_json("/api/sync/runs", limit=50)
        assert after["total"] == before + len(STREAMS)
        # One run per stream, counted as streams (not runs of an earlier sync too).
        assert f"— {len(STREAMS)} streams synced" in outcome, outcome
        fresh = after["runs"][: len(STREAMS)]
        idle = [r for r in fresh if r["status"] == "succeeded" and not sum(r["rows"].values())]
        if idle:
            assert "nothing new" in outcome
            for r in idle:
                cell = page.inner_text(
                    f'#sync-table tr[data-stream="{r["stream"]}"] td:nth-of-type(4)'
                )
                assert cell == "0 · nothing new", (r["stream"], cell)
        newest = after["runs"][0]
        wait_until_loaded(page)
        page.click("#sync-history summary")
        row = page.query_selector(f'#history-table tr[data-run="{newest["id"]}"]')
        assert row is not None and "succeeded" in row.inner_text()
        assert not page.is_disabled("#sync-all")
        session.assert_clean()


def test_a_reader_key_is_told_that_syncing_needs_an_admin_key(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    session = open_page(dashboard, key="reader", allow_statuses=(403,))
    page = session.page
    wait_until_loaded(page)
    page.click('#sync-table button[aria-label="Sync Metrics"]')
    page.wait_for_selector('#sync-progress[data-phase="refused"]')
    assert "needs an admin key" in page.inner_text("#sync-progress")
    session.assert_clean()


def test_the_key_prompt_appears_on_401_and_the_key_never_goes_into_a_url(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    session = open_page(dashboard, key=None, allow_statuses=(401,))
    page = session.page
    page.wait_for_selector("#key-dialog[open]")
    assert page.get_attribute('[data-panel="overview"]', "data-state") == "auth"
    page.fill("#key-input", dashboard.admin_key)
    page.click("#key-save")
    wait_until_loaded(page)
    assert page.get_attribute('[data-panel="overview"]', "data-state") == "ready"
    assert page.evaluate("localStorage.getItem('klaviyo-analytics.api-key')") == dashboard.admin_key
    assert not [u for u in session.requests if dashboard.admin_key in u]
    assert dashboard.admin_key not in page.url
    # A revoked or wrong key brings the prompt back with its reason.
    page.evaluate("localStorage.setItem('klaviyo-analytics.api-key', 'ka_wrong')")
    page.click("#refresh")
    page.wait_for_selector("#key-dialog[open]")
    assert "refused" in page.inner_text("#key-reason")
    session.assert_clean()


def test_an_empty_database_says_there_is_no_data_yet(
    make_dashboard: DashboardFactory, open_page: SessionFactory
) -> None:
    dash = make_dashboard(template=None, sandbox=None)
    session = open_page(dash, allow_statuses=(503,))
    page = session.page
    wait_until_loaded(page)
    assert page.inner_text("#freshness") == "Never synced"
    assert "No data yet — run a sync." in page.inner_text("#banner")
    for chart in ("revenue-chart", "distribution-chart", "engagement-chart", "top-chart"):
        assert "No data yet — run a sync." in page.inner_text(f"#{chart} .state-msg"), chart
    assert "No data yet — run a sync." in page.inner_text("#perf-table tbody")
    assert "No sync has run yet." in (page.text_content("#history-table tbody") or "")
    page.click("#sync-all")
    page.wait_for_selector('#sync-progress[data-phase="refused"]')
    assert "cannot sync" in page.inner_text("#sync-progress")
    session.assert_clean()
