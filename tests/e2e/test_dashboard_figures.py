"""What a marketer reads off the dashboard, checked against the API and against the database.

Issue 18: money labels that do not lie, hourly buckets for short ranges, counts as integers,
missing rates shown as missing, comparison periods said and warned about.
"""

from __future__ import annotations

import re
from decimal import Decimal
from itertools import pairwise
from typing import Any

from tests.e2e.conftest import Dashboard, SessionFactory, wait_until_loaded


def money_text(value: Decimal, places: int = 2) -> str:
    """What the page shows for an amount of dollars (en-US), with `places` decimals."""
    quantum = Decimal(1).scaleb(-places)
    return f"${value.quantize(quantum):,.{places}f}" if value >= 0 else f"-${-value:,.{places}f}"


def tick_labels(page: Any, chart: str, axis: str) -> list[str]:
    return [t.text_content() or "" for t in page.query_selector_all(f"#{chart} .{axis}tick text")]


def annotation(page: Any) -> str:
    """The donut's centre text, as plotly drew it (SVG: lines are tspans)."""
    return "\n".join(
        t.text_content() or ""
        for t in page.query_selector_all("#distribution-chart .annotation-text tspan.line")
    ) or (page.text_content("#distribution-chart .annotation-text") or "")


def parse_money(text: str) -> Decimal:
    assert re.fullmatch(r"-?\$[\d,]+(\.\d{1,2})?", text), f"not an exact money label: {text!r}"
    return Decimal(text.replace("$", "").replace(",", ""))


def daily_revenue(dash: Dashboard, start: str, end: str) -> dict[str, Decimal]:
    rows = dash.query(
        "SELECT date::text AS d, sum(revenue) AS r FROM fact_revenue"
        " WHERE date BETWEEN %s AND %s GROUP BY date",
        (start, end),
    )
    return {r["d"]: Decimal(r["r"]) for r in rows}


def test_revenue_axis_and_donut_show_exact_money_that_matches_the_database(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    session = open_page(dashboard)
    page = session.page
    wait_until_loaded(page)
    body = dashboard.get_json("/api/charts/revenue", range="last-30-days")
    assert body["bucket"] == "day"
    days = daily_revenue(dashboard, body["range"]["start"], body["range"]["end"])
    api_days: dict[str, Decimal] = {}
    for p in body["points"]:
        api_days[p["date"]] = api_days.get(p["date"], Decimal(0)) + Decimal(p["revenue"])
    assert {d: v for d, v in api_days.items() if v} == {d: v for d, v in days.items() if v}

    labels = tick_labels(page, "revenue-chart", "y")
    values = [parse_money(t) for t in labels]  # no "$2k" for 1,500: every label is exact
    assert values == sorted(values) and values[0] == 0 and len(values) >= 3
    steps = {b - a for a, b in pairwise(values)}
    assert len(steps) == 1, f"uneven ticks: {labels}"
    # The tallest day is drawn below the top gridline, and the axis is not wastefully tall.
    tallest = max(days.values())
    assert tallest <= values[-1] < tallest + 2 * steps.pop()

    total = sum(days.values(), Decimal(0))
    centre = annotation(page)
    assert centre.splitlines()[0] == money_text(total)
    session.assert_clean()


def test_today_is_drawn_by_hour_with_distinct_ticks_a_legend_and_the_databases_hours(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    session = open_page(dashboard, path="/#range=today")
    page = session.page
    wait_until_loaded(page)
    tz = dashboard.get_json("/api/account")["timezone"]
    body = dashboard.get_json("/api/charts/revenue", range="today")
    assert body["bucket"] == "hour"
    day = body["range"]["start"]
    assert page.get_attribute("#revenue-chart .plot", "data-bucket") == "hour"
    rows = dashboard.query(
        'SELECT extract(hour FROM "timestamp" AT TIME ZONE %s)::int AS h, sum(value) AS r'
        ' FROM fact_orders WHERE ("timestamp" AT TIME ZONE %s)::date = %s GROUP BY 1',
        (tz, tz, day),
    )
    truth = {r["h"]: Decimal(r["r"]) for r in rows}
    assert truth, "the store had no orders today"
    traces = page.evaluate(
        "document.querySelector('#revenue-chart .plot').data.map(t => [t.name, t.x, t.y])"
    )
    drawn: dict[int, Decimal] = {}
    for _, xs, ys in traces:
        for x, y in zip(xs, ys, strict=True):
            assert x.startswith(f"{day} ")
            hour = int(x[11:13])
            drawn[hour] = drawn.get(hour, Decimal(0)) + Decimal(str(y))
    assert {h: round(v, 2) for h, v in drawn.items() if v} == truth
    ticks = tick_labels(page, "revenue-chart", "x")
    assert len(ticks) >= 4 and len(set(ticks)) == len(ticks), ticks
    assert all(re.fullmatch(r"\d\d:\d\d", t) for t in ticks), ticks
    legend = [t.text_content() for t in page.query_selector_all("#revenue-chart .legendtext")]
    assert legend and set(legend) == {name for name, _, _ in traces}
    centre = annotation(page).splitlines()[0]
    assert centre == money_text(sum(truth.values(), Decimal(0)))
    session.assert_clean()


def test_a_year_is_grouped_by_week_not_drawn_as_hundreds_of_daily_bars(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    session = open_page(dashboard, path="/#range=this-year")
    page = session.page
    wait_until_loaded(page)
    body = dashboard.get_json("/api/charts/revenue", range="this-year")
    assert body["bucket"] == "week"
    xs = page.evaluate("document.querySelector('#revenue-chart .plot').data[0].x")
    assert 20 <= len(xs) <= 53
    start, end = body["range"]["start"], body["range"]["end"]
    total = sum(daily_revenue(dashboard, start, end).values(), Decimal(0))
    drawn = page.evaluate(
        "document.querySelector('#revenue-chart .plot').data"
        ".filter(t => t.type === 'bar').reduce((s, t) => s + t.y.reduce((a, b) => a + b, 0), 0)"
    )
    assert abs(Decimal(str(drawn)) - total) < Decimal("0.01")
    session.assert_clean()


def test_counts_are_json_integers_equal_to_the_database(dashboard: Dashboard) -> None:
    overview = dashboard.get_json("/api/overview", range="last-30-days")
    for kpi in ("orders", "unique_customers", "subscribers", "form_submissions"):
        for part in ("current", "previous"):
            assert type(overview[kpi][part]) is int, (kpi, part, overview[kpi][part])
    rng = overview["range"]
    orders = dashboard.query(
        "SELECT coalesce(sum(orders), 0)::int AS n FROM fact_revenue WHERE date BETWEEN %s AND %s",
        (rng["start"], rng["end"]),
    )[0]["n"]
    assert overview["orders"]["current"] == orders
    # Money stays an exact decimal string.
    assert isinstance(overview["revenue"]["current"], str)
