"""CLV: fitted by the scheduler's job, stored, read by GETs; checked against the sandbox's truth.

The orders come straight from the sandbox generator with campaigns and flows off, so every
order is the customer model's (sandbox/customers.py) and the fitted model can be compared with
the true process.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
import pytest

from klaviyo_analytics.cli.scheduler import build_jobs
from klaviyo_analytics.db.pool import Database
from klaviyo_analytics.klaviyo import KlaviyoClient
from klaviyo_analytics.sandbox import catalog as c
from klaviyo_analytics.sandbox.config import StoreOptions
from klaviyo_analytics.sandbox.generator import StoreGenerator
from klaviyo_analytics.sync.runner import DataSyncService
from klaviyo_analytics.sync.scheduler import Scheduler
from tests.integration.api.conftest import ApiFactory, api_settings

TZ = "America/New_York"
OPTIONS = StoreOptions(seed=19, profiles=6_000, days=365, campaigns=0, flows=0)


@pytest.fixture(scope="module")
def store() -> StoreGenerator:
    return StoreGenerator(OPTIONS)


def _load_orders(conninfo: str, store: StoreGenerator) -> dict[str, Decimal]:
    ev = store.events_between(store.start_ts, store.end_ts + 1)
    orders = ev.take((ev.metric == c.PLACED_ORDER) & (ev.profile >= 0))
    zone = ZoneInfo(TZ)
    historic: dict[str, Decimal] = defaultdict(Decimal)
    rows = []
    for number, ts, who, cents in zip(orders.id.tolist(), orders.ts.tolist(),
                                      orders.profile.tolist(), orders.value.tolist(),
                                      strict=True):  # fmt: skip
        moment = datetime.fromtimestamp(ts, UTC)
        pid = store.catalog.profile_id(who)
        value = Decimal(cents) / 100
        historic[pid] += value
        rows.append((f"{number:012x}", moment, moment.astimezone(zone).date(), pid, value))
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        with cur.copy(
            'COPY fact_orders (order_id, "timestamp", date, profile_id, value, channel,'
            " attribution) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row((*row, "unattributed", "none"))
    return dict(historic)


async def test_clv_is_fitted_by_the_job_stored_read_by_gets_and_near_the_truth(
    db_conninfo: str, make_api: ApiFactory, store: StoreGenerator, tmp_path: Path
) -> None:
    historic = _load_orders(db_conninfo, store)
    now = datetime.fromtimestamp(store.end_ts, UTC)
    async with make_api(db_conninfo, klaviyo=False, clock=lambda: now) as api:
        before = await api.get_json("/api/customers/clv")
        assert before["model"] is None and before["customers"] == 0
    with psycopg.connect(db_conninfo) as conn:
        assert conn.execute("SELECT count(*) FROM forecast_models").fetchone() == (0,)

    # The scheduler's job fits and stores (the service's clock says what "now" is).
    settings = api_settings(tmp_path, None, account_timezone=TZ)
    async with (
        Database(db_conninfo, min_size=1, max_size=3) as db,
        KlaviyoClient(api_key="pk_unused", base_url="http://127.0.0.1:9") as client,
    ):
        service = DataSyncService(db, client, clock=lambda: now)
        jobs = build_jobs(settings, db_conninfo, db, service)
        outcome = await Scheduler(db, jobs, timezone=TZ).run_job_now("clv")
    assert outcome.status == "succeeded", outcome.detail
    assert outcome.detail is not None and "CLV model" in outcome.detail

    async with make_api(db_conninfo, klaviyo=False, clock=lambda: now) as api:
        body = await api.get_json("/api/customers/clv", top=5)
        page = await api.get_json("/api/customers/clv/profiles", limit=1000)
        rest = await api.get_json("/api/customers/clv/profiles", limit=1000, offset=1000)
    model = body["model"]
    assert body["customers"] == len(historic) == page["total"]
    # Historic CLV is exact: the sum of the customer's order values.
    assert Decimal(body["historic_clv"]) == sum(historic.values(), Decimal(0))
    for row in page["profiles"]:
        assert Decimal(row["historic_clv"]) == historic[row["profile_id"]]
        assert row["predicted_orders_low"] <= row["predicted_orders_high"]
        assert Decimal(row["predicted_clv_low"]) <= Decimal(row["predicted_clv_high"])
        assert 0 <= Decimal(row["churn_probability"]) <= 1
    values = [Decimal(r["predicted_clv"]) for r in page["profiles"] + rest["profiles"]]
    assert values == sorted(values, reverse=True)
    assert [r["profile_id"] for r in body["top"]] == [r["profile_id"] for r in page["profiles"][:5]]
    assert sum(d["customers"] for d in body["distribution"]) == body["customers"]

    # The backtest beats the naive baseline and its 90 % intervals cover about 90 %.
    bt = model["backtest"]
    assert bt["mae_orders"] < bt["mae_orders_naive"]
    assert bt["mae_revenue"] < bt["mae_revenue_naive"]
    assert 0.8 <= bt["coverage_orders"] <= 1.0
    with psycopg.connect(db_conninfo) as conn:
        perf = conn.execute(
            "SELECT series_key, model_name, mae FROM model_performance ORDER BY 1, 2"
        ).fetchall()
    assert {(s, m) for s, m, _ in perf} == {
        ("customers:clv:orders", "bgnbd+gamma_gamma"), ("customers:clv:orders", "naive"),
        ("customers:clv:revenue", "bgnbd+gamma_gamma"), ("customers:clv:revenue", "naive"),
    }  # fmt: skip

    # Fitted against the truth: the purchase-rate prior's mean r/alpha is the mean true rate
    # of the customers it was fitted on; the spend model's mean is the mean order value.
    cat = store.catalog
    index = np.array([cat.profile_index(p) for p in historic])
    params = model["parameters"]
    true_rate = float(store.customers.rate[index].mean())
    assert abs(params["r"] / params["alpha"] / true_rate - 1) < 0.15, (params, true_rate)
    true_spend = float(store.customers.expected_spend_cents(index).mean()) / 100
    gg_mean = params["p"] * params["v"] / (params["q"] - 1)
    # Baskets reach their Gamma target to within a product's price, less discounts (~0.9x).
    assert 0.75 < gg_mean / true_spend < 1.1, (params, true_spend)
