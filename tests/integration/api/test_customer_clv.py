"""CLV: fitted by the scheduler's job, stored, read by GETs; checked against the sandbox's truth.

The orders come straight from the sandbox generator with campaigns and flows off, so every
order is the customer model's (sandbox/customers.py) and the fitted model can be compared with
the true process.
"""

from __future__ import annotations

import json
import pickle
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
import pytest

from klaviyo_analytics.analytics.compute import Workers
from klaviyo_analytics.cli.scheduler import build_jobs
from klaviyo_analytics.db.pool import Database
from klaviyo_analytics.klaviyo import KlaviyoClient
from klaviyo_analytics.sandbox import catalog as c
from klaviyo_analytics.sandbox.config import StoreOptions
from klaviyo_analytics.sandbox.generator import StoreGenerator
from klaviyo_analytics.sync.runner import DataSyncService
from klaviyo_analytics.sync.scheduler import Scheduler
from tests.fixtures.sandbox import SandboxFactory, served_predictions
from tests.fixtures.sync import sync_service
from tests.integration.api.conftest import ApiFactory, api_settings

TZ = "America/New_York"
OPTIONS = StoreOptions(seed=19, profiles=6_000, days=365, campaigns=0, flows=0)
T = TypeVar("T")


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


class _Recorded:
    """An Offload that runs in the worker processes and remembers what it ran."""

    def __init__(self, workers: Workers) -> None:
        self.workers = workers
        self.ran: list[str] = []

    async def __call__(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        self.ran.append(f"{fn.__module__}.{fn.__qualname__}")
        # What crosses to a worker process and back must pickle.
        pickle.dumps((fn, args, kwargs))
        return await self.workers(fn, *args, **kwargs)


def _number(value: Any) -> str | None:
    return None if value is None else str(Decimal(value).normalize())


async def test_clv_is_fitted_by_the_job_stored_read_by_gets_and_near_the_truth(
    db_conninfo: str,
    make_api: ApiFactory,
    make_sandbox: SandboxFactory,
    store: StoreGenerator,
    tmp_path: Path,
) -> None:
    historic = _load_orders(db_conninfo, store)
    now = datetime.fromtimestamp(store.end_ts, UTC)
    async with make_api(db_conninfo, klaviyo=False, clock=lambda: now) as api:
        before = await api.get_json("/api/customers/clv")
        assert before["model"] is None and before["customers"] == 0
    with psycopg.connect(db_conninfo) as conn:
        assert conn.execute("SELECT count(*) FROM forecast_models").fetchone() == (0,)

    # The profiles stream brings Klaviyo's own predictions (the sandbox of the same store).
    server = make_sandbox(store=OPTIONS)
    klaviyo = served_predictions(server)
    async with sync_service(db_conninfo, server) as syncs:
        synced = await syncs.run("profiles")
    assert synced.status == "succeeded" and synced.fetched == OPTIONS.profiles
    # Klaviyo has no predictions for some profiles: those stay NULL and out of the sums.
    missing = sorted(historic)[:10]
    with psycopg.connect(db_conninfo) as conn:
        conn.execute(
            "UPDATE klaviyo_profiles SET predicted_clv = NULL, predicted_number_of_orders = NULL"
            " WHERE id = ANY(%s)",
            [missing],
        )
    for pid in missing:
        klaviyo[pid] = {**klaviyo[pid], "predicted_clv": None, "predicted_number_of_orders": None}

    # The scheduler's job fits and stores (the service's clock says what "now" is), in the
    # scheduler's worker processes.
    settings = api_settings(tmp_path, None, account_timezone=TZ)
    async with (
        Database(db_conninfo, min_size=1, max_size=3) as db,
        KlaviyoClient(api_key="pk_unused", base_url="http://127.0.0.1:9") as client,
        Workers(1) as workers,
    ):
        offload = _Recorded(workers)
        service = DataSyncService(db, client, clock=lambda: now)
        jobs = build_jobs(settings, db_conninfo, db, service, offload)
        outcome = await Scheduler(db, jobs, timezone=TZ).run_job_now("clv")
    assert outcome.status == "succeeded", outcome.detail
    assert outcome.detail is not None and "CLV model" in outcome.detail
    assert offload.ran == ["klaviyo_analytics.analytics.clv.fit_clv"]

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

    # Klaviyo's predictions beside ours, per profile, exactly as synced.
    ours = {r["profile_id"]: r for r in page["profiles"] + rest["profiles"]}
    for pid, row in ours.items():
        theirs, pa = row["klaviyo"], klaviyo[pid]
        assert _number(theirs["predicted_clv"]) == _number(pa["predicted_clv"]), pid
        assert _number(theirs["historic_clv"]) == _number(pa["historic_clv"]), pid
        # Both historic CLVs are exact sums of the same orders.
        assert Decimal(theirs["historic_clv"]) == Decimal(row["historic_clv"]), pid
        assert _number(theirs["predicted_orders"]) == _number(pa["predicted_number_of_orders"])
        assert _number(theirs["churn_probability"]) == _number(pa["churn_probability"])
        assert _number(theirs["average_days_between_orders"]) == _number(
            pa["average_days_between_orders"]
        )
        when = pa["expected_date_of_next_order"]
        zone = ZoneInfo(page["timezone"])  # the API's store zone dates it
        expected = (
            datetime.fromisoformat(when).astimezone(zone).date().isoformat() if when else None
        )
        assert theirs["expected_next_order"] == expected, pid
    # Summed over the same customers: Klaviyo's and ours.
    assert all(ours[p]["klaviyo"]["predicted_clv"] is None for p in missing)
    summary = body["klaviyo"]
    same = [p for p in ours if klaviyo[p]["predicted_clv"] is not None]
    assert summary["customers"] == len(ours) - len(missing) == len(same)
    assert Decimal(summary["predicted_clv"]) == sum(
        (Decimal(klaviyo[p]["predicted_clv"]) for p in same), Decimal(0)
    )
    assert Decimal(summary["predicted_clv_ours"]) == sum(
        (Decimal(ours[p]["predicted_clv"]) for p in same), Decimal(0)
    )
    assert summary["profiles"] == OPTIONS.profiles - len(missing)
    assert Decimal(summary["profiles_predicted_clv"]) == sum(
        (Decimal(pa["predicted_clv"]) for pa in klaviyo.values() if pa["predicted_clv"]),
        Decimal(0),
    )
    # Both predict the same store: within a factor of two of each other in total.
    ratio = Decimal(summary["predicted_clv_ours"]) / Decimal(summary["predicted_clv"])
    assert Decimal("0.5") < ratio < Decimal(2), summary
    print("CLV beside Klaviyo's:", json.dumps(summary))

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
