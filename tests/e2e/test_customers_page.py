"""The Customers page shows what the customer endpoints return, and exports it as CSV."""

from __future__ import annotations

import asyncio
import concurrent.futures
import csv
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

from klaviyo_analytics.analytics import clv
from klaviyo_analytics.db.pool import Database
from tests.e2e.conftest import NOW, PHONE, Dashboard, SessionFactory, screenshot

PANELS = ("cohorts", "rfm", "clv", "products", "funnel")


def _fit(conninfo: str) -> None:
    async def work() -> None:
        async with Database(conninfo, min_size=1, max_size=2) as db:
            await clv.fit_and_store(db.run, timezone="America/New_York", now=NOW)

    # Playwright's sync API holds this thread's event loop; the fit runs in its own thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, work()).result()


def _wait(page: Any) -> None:
    for panel in PANELS:
        page.wait_for_selector(f'[data-panel="{panel}"]:not([data-state="loading"])',
                               state="attached")  # fmt: skip


def test_customers_page_shows_every_panel_as_the_api_returns_it_and_exports_csv(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    _fit(dashboard.conninfo)
    session = open_page(dashboard, key="reader", path="/customers")
    page = session.page
    _wait(page)
    for panel in PANELS:
        assert page.get_attribute(f'[data-panel="{panel}"]', "data-state") == "ready", panel
    start, end = page.input_value("#c-start"), page.input_value("#c-end")
    rfm = dashboard.get_json("/api/customers/rfm", as_of=end)
    assert end == rfm["as_of"] == "2026-06-30"  # the store's today, not the browser's

    cohorts = dashboard.get_json("/api/customers/cohorts", start=start, end=end)["cohorts"]
    rows = page.query_selector_all("#cohort-table tbody tr")
    assert [r.get_attribute("data-cohort") for r in rows] == [c["cohort"] for c in cohorts]
    first = cohorts[0]
    cells = rows[0].query_selector_all("td.cell")
    assert len(cells) == len(first["periods"])
    share = first["periods"][0]["active_customers"] / first["customers"]
    assert cells[0].inner_text() == f"{round(share * 100)}%"

    shown = {r.query_selector_all("td")[0].inner_text(): r.query_selector_all("td")[1].inner_text()
             for r in page.query_selector_all("#rfm-table tbody tr")}  # fmt: skip
    assert shown == {g["group"]: f"{g['customers']:,}" for g in rfm["groups"]}

    products = dashboard.get_json("/api/products", start=start, end=end)["products"]
    names = [r.query_selector("td").inner_text()
             for r in page.query_selector_all("#products-table tbody tr")]  # fmt: skip
    assert names == [p["product_name"] for p in products] and len(names) > 5

    funnel = dashboard.get_json("/api/funnel", start=start, end=end)
    bars = page.inner_text("#funnel-bars")
    for step in funnel["steps"]:
        assert step["step"] in bars and f"{step['profiles']:,}" in bars

    clv_body = dashboard.get_json("/api/customers/clv", top=10)
    assert clv_body["model"] is not None
    top = [
        r.query_selector("td").inner_text() for r in page.query_selector_all("#clv-top tbody tr")
    ]
    assert top == [r["profile_id"] for r in clv_body["top"]]
    assert len(page.query_selector_all("#clv-distribution .cbar")) == len(clv_body["distribution"])
    # Klaviyo's own predictions (synced with the profiles) beside ours, per customer and summed.
    heads = [th.inner_text() for th in page.query_selector_all("#clv-top thead th")]
    column = heads.index("Klaviyo's")
    churn = heads.index("Klaviyo churn")
    compared = 0
    for tr, row in zip(page.query_selector_all("#clv-top tbody tr"), clv_body["top"], strict=True):
        cells = [td.inner_text() for td in tr.query_selector_all("td")]
        assert f"{Decimal(row['predicted_clv']):,.2f}" in cells[heads.index("Predicted")]
        theirs = row["klaviyo"]["predicted_clv"] if row["klaviyo"] else None
        if theirs is None:
            assert cells[column] == "—"
            continue
        compared += 1
        assert f"{Decimal(theirs):,.2f}" in cells[column], (cells, theirs)
        assert cells[churn] == f"{Decimal(row['klaviyo']['churn_probability']) * 100:.2f}%"
    assert compared > 0
    k = clv_body["klaviyo"]
    assert k["customers"] > 0
    text = page.inner_text("#clv-klaviyo")
    assert f"{k['customers']:,}" in text and f"{Decimal(k['predicted_clv']):,.2f}" in text
    with page.expect_download() as info:
        page.click('button[data-csv="clv"]')
    exported = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text("utf-8"))))
    for got, want in zip(exported, clv_body["top"], strict=True):
        assert got["profile_id"] == want["profile_id"]
        assert Decimal(got["klaviyo_predicted_clv"]) == Decimal(want["klaviyo"]["predicted_clv"])

    with page.expect_download() as info:
        page.click('button[data-csv="products"]')
    download = info.value
    assert download.suggested_filename == f"products-{start}-{end}.csv"
    exported = list(csv.DictReader(io.StringIO(Path(download.path()).read_text("utf-8"))))
    assert [r["product_id"] for r in exported] == [p["product_id"] for p in products]
    for got, want in zip(exported, products, strict=True):
        assert Decimal(got["revenue"]) == Decimal(want["revenue"])
        assert int(got["orders"]) == want["orders"]
    with page.expect_download() as info:
        page.click('button[data-csv="cohorts"]')
    exported = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text("utf-8"))))
    assert len(exported) == sum(len(c["periods"]) for c in cohorts)
    screenshot(page, "customers-desktop")
    session.assert_clean()

    phone = open_page(dashboard, key="reader", path="/customers", viewport=PHONE)
    _wait(phone.page)
    assert all(phone.page.get_attribute(f'[data-panel="{p}"]', "data-state") == "ready"
               for p in PANELS)  # fmt: skip
    screenshot(phone.page, "customers-phone")
    phone.assert_clean()


def test_customers_page_asks_for_a_key_without_one(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    session = open_page(dashboard, key=None, path="/customers", allow_statuses=(401,))
    page = session.page
    page.wait_for_selector("#c-keyform:not([hidden])")
    page.fill("#c-keyinput", dashboard.reader_key)
    page.click("#c-keyform button[type=submit]")
    _wait(page)
    assert page.get_attribute('[data-panel="products"]', "data-state") == "ready"
    assert all(dashboard.reader_key not in u for u in session.requests)


def test_the_dashboard_links_to_the_customers_page_and_back(
    dashboard: Dashboard, open_page: SessionFactory
) -> None:
    session = open_page(dashboard, key="reader")
    page = session.page
    page.get_by_role("navigation", name="Pages").get_by_role("link").click()
    page.wait_for_url("**/customers")
    _wait(page)  # the key entered on the dashboard still opens every panel
    assert page.get_attribute('[data-panel="cohorts"]', "data-state") == "ready"
    page.get_by_role("link", name="← Dashboard").click()
    page.wait_for_selector("#range-form")
    assert "/customers" not in page.url
