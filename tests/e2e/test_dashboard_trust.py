"""Issue 18's "wrong or misleading" items, as a user sees them, against the API and the database."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.e2e.conftest import PHONE, Dashboard, SessionFactory, wait_until_loaded

SUBSCRIBED_METRIC = "Subscribed to Email Marketing"


def column_cells(page: Any, column: str) -> list[str]:
    return [c.inner_text() for c in page.query_selector_all(f'#perf-table td[data-col="{column}"]')]


def header_labels(page: Any) -> list[str]:
    return [th.inner_text() for th in page.query_selector_all("#perf-table thead th")]


def test_sms_campaigns_show_no_open_rate_and_sort_after_every_email_campaign(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    session = open_page(dashboard, path="/#range=last-90-days")
    page = session.page
    wait_until_loaded(page)
    sms = {
        r["id"] for r in dashboard.query("SELECT id FROM klaviyo_campaigns WHERE channel = 'sms'")
    }
    assert sms
    for order in ("descending", "ascending"):
        page.click('#perf-table th button[data-sort="open_rate"]')
        page.wait_for_selector(f'#perf-table th[aria-sort="{order}"] button[data-sort="open_rate"]')
        wait_until_loaded(page)
        api = dashboard.get_json(
            "/api/campaigns", range="last-90-days", sort="open_rate",
            order="asc" if order == "ascending" else "desc",
        )["rows"]  # fmt: skip
        ids = [r.get_attribute("data-id") for r in page.query_selector_all("#perf-table tbody tr")]
        assert ids == [r["id"] for r in api]
        shown = dict(zip(ids, column_cells(page, "open_rate"), strict=True))
        on_page = [i for i in ids if i in sms]
        assert on_page, "no SMS campaign in the range"
        assert all(shown[i] == "—" for i in on_page)
        assert all(r["open_rate"] is None for r in api if r["id"] in sms)
        assert all(shown[i].endswith("%") for i in ids if i not in sms)
        # Missing values last, whichever the direction.
        assert ids[-len(on_page) :] == on_page, order
    session.assert_clean()


def test_campaigns_drop_the_always_empty_vs_previous_column_and_flows_keep_it(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    session = open_page(dashboard)
    page = session.page
    wait_until_loaded(page)
    assert "vs previous" not in header_labels(page)
    page.click("#tab-flows")
    page.wait_for_selector('#perf-table th button[data-sort="status"]')
    wait_until_loaded(page)
    assert "vs previous" in header_labels(page)
    session.assert_clean()


def test_the_comparison_period_is_named_chosen_and_warned_about_before_the_data(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    first = dashboard.query("SELECT min(date) AS d FROM fact_revenue")[0]["d"]
    session = open_page(dashboard, path="/#range=last-90-days")
    page = session.page
    wait_until_loaded(page)
    ov = dashboard.get_json("/api/overview", range="last-90-days")
    assert ov["compare"] == "previous" and ov["data_since"] == first.isoformat()
    assert date.fromisoformat(ov["previous_range"]["start"]) < first
    assert ov["comparison_before_data"] is True
    label = page.inner_text("#range-label")
    assert "compared with the previous period" in label
    warning = page.inner_text("#compare-warning")
    assert page.is_visible("#compare-warning") and "before the first synced order" in warning
    assert f"{first:%b} {first.day}, {first.year}" in warning

    # Same dates last year, chosen explicitly: the overview is asked for it and says so.
    session.requests.clear()
    page.select_option("#range-preset", "last-7-days")
    wait_until_loaded(page)
    assert not page.is_visible("#compare-warning")
    page.select_option("#compare", "year")
    page.wait_for_selector('#range-label:has-text("same dates last year")')
    wait_until_loaded(page)
    assert any("compare=year" in u for u in session.api_requests() if "/api/overview" in u)
    yoy = dashboard.get_json("/api/overview", range="last-7-days", compare="year")
    start = date.fromisoformat(yoy["range"]["start"])
    assert yoy["previous_range"]["start"] == start.replace(year=start.year - 1).isoformat()
    assert "compare=year" in page.url
    # A year before a 120-day store is before its data: the page says so.
    assert yoy["comparison_before_data"] is True and page.is_visible("#compare-warning")
    session.assert_clean()


def test_new_subscribers_count_subscription_events_and_the_fallback_is_labelled(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    ov = dashboard.get_json("/api/overview", range="last-30-days")
    assert ov["subscribers_source"] == "subscribed_events"
    assert ov["subscribers_metric"] == SUBSCRIBED_METRIC
    tz = ov["timezone"]
    rng = ov["range"]
    truth = dashboard.query(
        "SELECT count(*)::int AS n FROM klaviyo_events e JOIN klaviyo_metrics m"
        " ON m.id = e.metric_id WHERE m.name = %s"
        " AND (e.timestamp AT TIME ZONE %s)::date BETWEEN %s AND %s",
        (SUBSCRIBED_METRIC, tz, rng["start"], rng["end"]),
    )[0]["n"]
    assert ov["subscribers"]["current"] == truth > 0
    # Not form submissions under another name (issue 18: 409/409).
    assert ov["subscribers"]["current"] != ov["form_submissions"]["current"]
    session = open_page(dashboard)
    page = session.page
    wait_until_loaded(page)
    card = page.query_selector('[data-kpi="subscribers"]')
    assert card.query_selector('[data-role="value"]').inner_text() == f"{truth:,}"
    assert SUBSCRIBED_METRIC in card.query_selector('[data-role="source"]').inner_text()

    # Without subscription events the count falls back to new profiles, and says so.
    dashboard.query(
        "UPDATE klaviyo_metrics SET name = 'Renamed ' || name WHERE name LIKE 'Subscribed to %%'"
        " RETURNING id"
    )
    page.select_option("#range-preset", "last-7-days")
    wait_until_loaded(page)
    fallback = dashboard.get_json("/api/overview", range="last-7-days")
    assert fallback["subscribers_source"] == "profiles"
    card = page.query_selector('[data-kpi="subscribers"]')
    assert "no subscription events" in card.query_selector('[data-role="source"]').inner_text()
    session.assert_clean()


def test_the_forecast_note_speaks_in_money_and_measured_coverage_without_metric_ids(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    metric = next(
        m["id"]
        for m in dashboard.get_json("/api/metrics")["metrics"]
        if m["name"] == "Placed Order"
    )
    # The anomaly check refuses a week (422, expected); the note must say why in words.
    session = open_page(dashboard, path="/#range=last-7-days", allow_statuses=(422,))
    page = session.page
    wait_until_loaded(page)
    page.check("#forecast-toggle")
    page.wait_for_selector('[data-panel="revenue"][data-state="ready"]', timeout=120_000)
    page.wait_for_selector("#forecast-note:not([hidden])")
    note = page.inner_text("#forecast-note")
    f = dashboard.get_json(f"/api/analytics/forecast/{metric}", measure="sum", horizon=14)
    best = next(s for s in f["backtest"] if s["model_name"] == f["model_name"])
    assert metric not in note and "backtest" not in note.lower()
    assert f"missed by ±${best['mae']:,.2f} a day" in note
    assert f"on {best['coverage'] * 100:.1f}% of those days" in note
    assert f"last {round(best['folds'] * 14 / 7)} weeks" in note
    # A week is too short to look for unusual days: said in words.
    assert "ranges of two weeks or more" in note
    session.assert_clean()


def test_the_key_prompt_gives_a_command_that_works(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    session = open_page(dashboard, key=None, allow_statuses=(401,))
    page = session.page
    page.wait_for_selector("#key-dialog[open]")
    text = page.inner_text("#key-reason")
    assert "klaviyo-analytics apikey create --name" in text and "--role admin" in text
    session.assert_clean()


def test_on_a_phone_the_table_names_its_off_screen_columns_and_segments_say_sizes_now(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    session = open_page(dashboard, viewport=PHONE)
    page = session.page
    wait_until_loaded(page)
    page.wait_for_selector("#table-scroll-cue:not([hidden])")
    cue = page.inner_text("#table-scroll-cue")
    assert "Revenue" in cue
    page.evaluate(
        "(() => { const w = document.getElementById('table-panel'); w.scrollLeft = w.scrollWidth; })()"
    )
    page.wait_for_selector("#table-scroll-cue[hidden]", state="attached")
    page.click("#tab-segments")
    page.wait_for_selector('#perf-table th button[data-sort="profile_count"]')
    wait_until_loaded(page)
    sub = page.inner_text("#table-sub")
    rng = dashboard.get_json("/api/segments", range="last-30-days")["range"]
    assert "sizes now" in sub
    assert str(date.fromisoformat(rng["end"]).year) not in sub
    session.assert_clean()


def test_attributed_revenue_is_split_and_names_its_rule_as_the_database_has_it(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    ov = dashboard.get_json("/api/overview", range="last-30-days")
    a = ov["attributed"]
    rng = ov["range"]
    rows = dashboard.query(
        "SELECT channel, attribution, sum(value) AS v FROM fact_orders"
        " WHERE date BETWEEN %s AND %s GROUP BY 1, 2",
        (rng["start"], rng["end"]),
    )

    def total(keep: Any) -> Decimal:
        return sum((Decimal(r["v"]) for r in rows if keep(r)), Decimal(0))

    attributed = total(lambda r: r["channel"] != "unattributed")
    assert Decimal(a["revenue"]["current"]) == attributed > 0
    assert Decimal(a["campaigns"]) == total(lambda r: r["channel"].endswith("_campaign"))
    assert Decimal(a["flows"]) == total(lambda r: r["channel"].endswith("_flow"))
    assert Decimal(a["email"]) == total(lambda r: r["channel"].startswith("email"))
    assert Decimal(a["sms"]) == total(lambda r: r["channel"].startswith("sms"))
    assert Decimal(a["klaviyo"]) == total(lambda r: r["attribution"] == "klaviyo")
    assert Decimal(a["last_touch"]) == total(lambda r: r["attribution"] == "last_touch")
    everything = total(lambda r: True)
    assert a["share_pct"] == round(float(attributed / everything * 100), 2)

    session = open_page(dashboard)
    page = session.page
    wait_until_loaded(page)
    card = page.query_selector('[data-kpi="attributed_revenue"]')
    assert card.query_selector('[data-role="value"]').inner_text() == f"${attributed:,.2f}"
    parts = {
        p.get_attribute("data-part"): p.inner_text()
        for p in card.query_selector_all('[data-role="split"] [data-part]')
    }
    assert parts["share"] == f"{Decimal(str(a['share_pct'])).quantize(Decimal('0.1'))}% of revenue"
    assert parts["source"] == (
        f"Campaigns ${Decimal(a['campaigns']):,.2f} · Flows ${Decimal(a['flows']):,.2f}"
    )
    assert parts["medium"] == f"Email ${Decimal(a['email']):,.2f} · SMS ${Decimal(a['sms']):,.2f}"
    assert "Klaviyo's attribution" in parts["rule"] and "last touch" in parts["rule"]
    assert "within 5 days" in parts["rule"] and "SMS click within 1 day" in parts["rule"]
    # Net revenue and refunds are on the page too.
    for kpi in ("net_revenue", "refunds"):
        value = page.query_selector(f'[data-kpi="{kpi}"] [data-role="value"]').inner_text()
        assert value == f"${Decimal(ov[kpi]['current']):,.2f}", kpi
    session.assert_clean()


def percent_text(value: Decimal) -> str:
    """The page's small-rate format: 3 decimals under 0.1 %, else 2."""
    places = 3 if value != 0 and abs(value) < Decimal("0.001") else 2
    return f"{(value * 100).quantize(Decimal(1).scaleb(-places))}%"


def test_list_health_rates_equal_the_database_with_klaviyos_thresholds_drawn(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    ov = dashboard.get_json("/api/overview", range="last-30-days")
    rng = ov["range"]
    row = dashboard.query(
        "SELECT sum(recipients) FILTER (WHERE channel LIKE 'email%%') AS er,"
        " sum(recipients) AS r, sum(bounces) AS b, sum(spam_complaints) AS s,"
        " sum(unsubscribes) AS u, sum(unique_opens) AS o,"
        " sum(unique_clicks) FILTER (WHERE channel LIKE 'email%%') AS c"
        " FROM fact_message_engagement WHERE date BETWEEN %s AND %s",
        (rng["start"], rng["end"]),
    )[0]
    six = Decimal("0.000001")
    truth = {
        "bounce_rate": (Decimal(row["b"]) / row["er"]).quantize(six),
        "spam_rate": (Decimal(row["s"]) / row["er"]).quantize(six),
        "unsubscribe_rate": (Decimal(row["u"]) / row["r"]).quantize(six),
        "click_to_open_rate": (Decimal(row["c"]) / row["o"]).quantize(six),
    }
    healthy = {"bounce_rate": Decimal("0.01"), "spam_rate": Decimal("0.0001"),
               "unsubscribe_rate": Decimal("0.003")}  # fmt: skip
    session = open_page(dashboard)
    page = session.page
    wait_until_loaded(page)
    for key, want in truth.items():
        assert Decimal(ov["deliverability"][key]["current"]) == want, key
        tile = page.query_selector(f'.health-tile[data-health="{key}"]')
        assert tile.query_selector('[data-role="value"]').inner_text() == percent_text(want)
        status = tile.query_selector('[data-role="status"]').inner_text()
        if key in healthy:
            assert status == ("Healthy" if want < healthy[key] else status), key
            assert status in ("Healthy", "Room for improvement", "Needs attention")
            threshold = tile.query_selector('[data-role="threshold"]').inner_text()
            assert threshold == f"Healthy below {percent_text(healthy[key])}"
        else:
            assert status == "No published threshold"

    campaigns = dashboard.get_json(
        "/api/campaigns", range="last-30-days", sort="send_time", order="desc", limit=20
    )["rows"]
    email = [r for r in campaigns if r["channel"] == "email" and r["bounce_rate"] is not None]
    for key in ("bounce_rate", "spam_rate"):
        page.click(f"#health-tab-{key}")
        page.wait_for_selector(f'#health-chart[aria-labelledby="health-tab-{key}"]')
        page.wait_for_selector('[data-panel="health"][data-state="ready"]')
        drawn = page.evaluate(
            "(() => { const p = document.querySelector('#health-chart .plot');"
            " return {y: p.data[0].y, x: p.data[0].x, text: p.data[0].text,"
            " line: p.layout.shapes[0].x0}; })()"
        )
        assert list(reversed(drawn["y"])) == [r["name"] for r in email]
        assert [Decimal(str(x)) for x in reversed(drawn["x"])] == [Decimal(r[key]) for r in email]
        assert Decimal(str(drawn["line"])) == healthy[key]
        # The status is written on each bar, not shown by colour alone.
        assert all(" · " in t for t in drawn["text"])
        label = page.text_content("#health-chart .annotation-text") or ""
        assert label == f"Klaviyo healthy: below {percent_text(healthy[key])}"
    session.assert_clean()


def test_a_campaign_opens_in_a_shareable_detail_view_with_its_first_72_hours(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    session = open_page(dashboard, path="/#range=last-90-days")
    page = session.page
    wait_until_loaded(page)
    link = page.query_selector('#perf-table td[data-col="name"] a')
    name = link.inner_text()
    link.click()
    page.wait_for_selector("#detail:not([hidden])")
    wait_until_loaded(page)
    campaign_id = page.url.split("campaign=")[1].split("&")[0]
    assert "range=last-90-days" in page.url
    body = dashboard.get_json(f"/api/campaigns/{campaign_id}")
    assert page.inner_text("#detail-title") == name == body["campaign"]["name"]
    tz = body["timezone"]
    truth = dashboard.query(
        "SELECT count(*)::int AS n, coalesce(sum(o.value), 0) AS v FROM fact_orders o"
        " JOIN klaviyo_campaigns c ON c.id = o.source_id WHERE o.source_type = 'campaign'"
        " AND o.source_id = %s AND o.date >= (c.send_time AT TIME ZONE %s)::date",
        (campaign_id, tz),
    )[0]
    assert body["campaign"]["conversions"] == truth["n"] > 0
    assert Decimal(body["campaign"]["revenue"]) == Decimal(truth["v"])
    tile = page.inner_text('#detail-figures [data-figure="revenue"] [data-role="value"]')
    assert tile == f"${Decimal(truth['v']):,.2f}"
    first = dashboard.query(
        "SELECT coalesce(sum(o.value), 0) AS v, count(*)::int AS n FROM fact_orders o"
        " JOIN klaviyo_campaigns c ON c.id = o.source_id WHERE o.source_id = %s"
        " AND o.timestamp >= c.send_time AND o.timestamp < c.send_time + interval '72 hours'",
        (campaign_id,),
    )[0]
    assert len(body["hours"]) == 72
    assert sum(Decimal(h["revenue"]) for h in body["hours"]) == Decimal(first["v"])
    drawn = page.evaluate(
        "document.querySelector('#detail-chart .plot').data.map(t => [t.name, t.y])"
    )
    by_name = {n: y for n, y in drawn}
    assert set(by_name) == {"Revenue", "Opens", "Clicks"}
    assert (
        sum(by_name["Revenue"]) == float(Decimal(first["v"]))
        or abs(sum(by_name["Revenue"]) - float(first["v"])) < 0.01
    )
    assert by_name["Opens"] == [h["opens"] for h in body["hours"]]

    # The address is shareable: a fresh page on it opens the same view.
    other = open_page(dashboard, path="/" + page.url.split("/", 3)[3])
    wait_until_loaded(other.page)
    other.page.wait_for_selector("#detail:not([hidden])")
    assert other.page.inner_text("#detail-title") == name
    other.page.click("#detail-close")
    other.page.wait_for_selector("#detail[hidden]", state="attached")
    assert "campaign=" not in other.page.url
    session.assert_clean()
    other.assert_clean()


def test_a_flow_detail_lists_each_message_in_flow_order(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    session = open_page(dashboard, path="/#range=last-30-days")
    page = session.page
    wait_until_loaded(page)
    page.click("#tab-flows")
    page.wait_for_selector('#perf-table th button[data-sort="status"]')
    wait_until_loaded(page)
    page.click('#perf-table td[data-col="name"] a')
    page.wait_for_selector("#detail:not([hidden])")
    wait_until_loaded(page)
    flow_id = page.url.split("flow=")[1].split("&")[0]
    order = dashboard.query(
        "SELECT m.id FROM klaviyo_flow_messages m JOIN klaviyo_flow_actions a"
        " ON a.id = m.flow_action_id WHERE m.flow_id = %s ORDER BY a.created, a.id, m.id",
        (flow_id,),
    )
    rows = page.query_selector_all("#detail-table tbody tr")
    assert [r.get_attribute("data-id") for r in rows] == [o["id"] for o in order]
    api = dashboard.get_json(
        f"/api/flows/{flow_id}/messages", range="last-30-days", sort="position", order="asc"
    )["rows"]
    assert [r["position"] for r in api] == list(range(1, len(order) + 1))
    revenue = [r.query_selector('td[data-col="revenue"]').inner_text() for r in rows]
    assert revenue == [f"${Decimal(r['revenue']):,.2f}" for r in api]
    session.assert_clean()


def test_same_dates_last_year_is_drawn_over_the_revenue_bars(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    # The API gives any comparison range's series bucket for bucket (checked on the preceding
    # range, which this 120-day store has data for) ...
    body = dashboard.get_json("/api/charts/revenue", range="last-30-days", compare="previous")
    prev = body["previous_range"]
    assert len(body["previous"]) == len(body["points"])
    days = dashboard.query(
        "SELECT date::text AS d, sum(revenue) AS r FROM fact_revenue"
        " WHERE date BETWEEN %s AND %s GROUP BY date",
        (prev["start"], prev["end"]),
    )
    api: dict[str, Decimal] = {}
    for p in body["previous"]:
        api[p["date"]] = api.get(p["date"], Decimal(0)) + Decimal(p["revenue"])
    assert {d: v for d, v in api.items() if v} == {r["d"]: Decimal(r["r"]) for r in days if r["r"]}
    # ... and the page draws last year's when "Same dates last year" is chosen.
    session = open_page(dashboard, path="/#range=last-30-days&compare=year")
    page = session.page
    wait_until_loaded(page)
    yoy = dashboard.get_json("/api/charts/revenue", range="last-30-days", compare="year")
    start = date.fromisoformat(yoy["range"]["start"])
    assert yoy["previous_range"]["start"] == start.replace(year=start.year - 1).isoformat()
    totals: dict[str, Decimal] = {}
    for p in yoy["previous"]:
        totals[p["date"]] = totals.get(p["date"], Decimal(0)) + Decimal(p["revenue"])
    line = page.evaluate(
        "document.querySelector('#revenue-chart .plot').data"
        ".find(t => t.name === 'Same dates last year').y"
    )
    assert [Decimal(str(v)) for v in line] == [totals[d] for d in sorted(totals)]
    legend = [t.text_content() for t in page.query_selector_all("#revenue-chart .legendtext")]
    assert "Same dates last year" in legend
    session.assert_clean()


def test_every_chart_is_reachable_by_keyboard_and_summarised_in_words(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    session = open_page(dashboard)
    page = session.page
    wait_until_loaded(page)
    summaries = {}
    for chart in ("revenue-chart", "distribution-chart", "top-chart", "health-chart"):
        assert page.get_attribute(f"#{chart}", "tabindex") == "0", chart
        described = page.get_attribute(f"#{chart}", "aria-describedby")
        summaries[chart] = page.text_content(f"#{described}") or ""
    rng = dashboard.get_json("/api/overview", range="last-30-days")["range"]
    total = dashboard.query(
        "SELECT sum(revenue) AS r FROM fact_revenue WHERE date BETWEEN %s AND %s",
        (rng["start"], rng["end"]),
    )[0]["r"]
    assert f"${Decimal(total):,.2f} in all" in summaries["revenue-chart"]
    shares = dashboard.get_json("/api/charts/distribution", range="last-30-days")["points"]
    for p in shares:
        if Decimal(p["revenue"]) > 0:
            assert f"${Decimal(p['revenue']):,.2f}" in summaries["distribution-chart"]
    assert any(
        word in summaries["health-chart"]
        for word in ("Healthy", "Room for improvement", "Needs attention")
    )
    session.assert_clean()


def test_charts_and_list_health_export_their_exact_figures_as_csv(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    session = open_page(dashboard)
    page = session.page
    wait_until_loaded(page)
    with page.expect_download() as info:
        page.click("#revenue-export")
    assert info.value.suggested_filename == "revenue_by_day_last-30-days.csv"
    rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text(encoding="utf-8"))))
    points = dashboard.get_json("/api/charts/revenue", range="last-30-days")["points"]
    assert [(r["date"], r["channel"], Decimal(r["revenue"]), int(r["orders"])) for r in rows] == [
        (p["date"], p["channel"], Decimal(p["revenue"]), p["orders"]) for p in points
    ]
    with page.expect_download() as info:
        page.click("#health-export")
    rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text(encoding="utf-8"))))
    campaigns = dashboard.get_json(
        "/api/campaigns", range="last-30-days", sort="send_time", order="desc", limit=20
    )["rows"]
    email = [c for c in campaigns if c["channel"] == "email"]
    assert [r["id"] for r in rows] == [c["id"] for c in email]
    for got, want in zip(rows, email, strict=True):
        for key in ("bounce_rate", "spam_rate", "unsubscribe_rate"):
            assert (got[key] or None) == want[key], key
    session.assert_clean()


def test_same_dates_last_year_is_drawn_over_the_engagement_rates(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    # The API gives any comparison range's days (checked on the preceding range, which this
    # 120-day store has data for) ...
    body = dashboard.get_json("/api/charts/engagement", range="last-30-days", compare="previous")
    prev = body["previous_range"]
    assert prev["end"] < body["range"]["start"]
    delivered = dashboard.query(
        "SELECT date::text AS d, sum(delivered) AS n FROM fact_message_engagement"
        " WHERE date BETWEEN %s AND %s GROUP BY date HAVING sum(delivered) > 0",
        (prev["start"], prev["end"]),
    )
    api: dict[str, int] = {}
    for p in body["previous"]:
        api[p["date"]] = api.get(p["date"], 0) + int(p["delivered"])
    assert {d: n for d, n in api.items() if n} == {r["d"]: int(r["n"]) for r in delivered}
    # ... and the page draws last year's rates when "Same dates last year" is chosen: the
    # store holds nothing a year back, so the lines are there, in the legend, and empty.
    session = open_page(dashboard, path="/#range=last-30-days&compare=year")
    page = session.page
    wait_until_loaded(page)
    yoy = dashboard.get_json("/api/charts/engagement", range="last-30-days", compare="year")
    start = date.fromisoformat(yoy["range"]["start"])
    assert yoy["previous_range"]["start"] == start.replace(year=start.year - 1).isoformat()
    names = page.evaluate("document.querySelector('#engagement-chart .plot').data.map(t => t.name)")
    assert "Email open rate, same dates last year" in names
    line = page.evaluate(
        "document.querySelector('#engagement-chart .plot').data"
        ".find(t => t.name === 'Email open rate, same dates last year').y"
    )
    assert len(line) == len({p["date"] for p in yoy["points"]})
    assert not any(p["delivered"] for p in yoy["previous"])  # the store began this year
    assert all(v is None for v in line)  # no rate where nothing was delivered
    session.assert_clean()
