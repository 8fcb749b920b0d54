"""Customer lifetime value: historic (exact) and predicted (BG/NBD + Gamma-Gamma, `lifetimes`).

The scheduler's `clv` job fits the models after syncs (`fit_and_store`, in a worker process) and
stores them: the model in `forecast_models` (series `customers:clv`, parameters and backtest
in `parameters`), its backtest in `model_performance`, and one row per customer in
`customer_clv`. GETs only read what is stored (`stored_model`, `stored_profiles`); historic CLV
is read exact from `fact_orders` at request time.

Inputs per customer, in days from the first order (lifetimes' convention): `frequency` = days
with an order after the first one, `recency` = days from the first to the last order day,
`T` = days from the first order day to the fit date; `monetary` = mean order-day value of the
repeat days. Intervals: per customer, 400 draws from the fitted model conditioned on its
history (alive with P(alive); rate and dropout from their posteriors; orders = min(Poisson
purchases, purchases until dropout); spend from the Gamma-Gamma posterior). Backtest: refit on
the history up to `holdout_days` before the fit date and compare the holdout's real orders and
revenue per customer with the predictions and with a naive baseline (each customer's historic
daily order rate and mean order value). Definitions: docs/analytics.md.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np

from klaviyo_analytics.analytics.compute import Offload, in_thread
from klaviyo_analytics.analytics.errors import (
    InvalidParameterError,
    ModelUnavailableError,
    SeriesTooShortError,
)
from klaviyo_analytics.db.pool import Conn

__all__ = [
    "CLV_SERIES",
    "ClvFit",
    "ClvHistory",
    "fit_clv",
    "read_history",
    "store_clv",
]

logger = logging.getLogger(__name__)

CLV_SERIES = "customers:clv"
MODEL_NAME = "bgnbd+gamma_gamma"
HORIZON_DAYS = 365
LEVEL = 0.9
DRAWS = 400
MIN_CUSTOMERS = 20
MIN_REPEAT_CUSTOMERS = 10


@dataclass(frozen=True)
class ClvHistory:
    """Per-customer order history as of `as_of` (local dates), one entry per customer."""

    as_of: date
    profile_ids: list[str]
    first: np.ndarray  # days since 1970-01-01 of the first order day
    days: list[np.ndarray]  # order days (days since epoch), ascending, unique
    values: list[np.ndarray]  # value of each order day (floats, for the model only)


_HISTORY = (
    "SELECT profile_id, date, sum(value) AS value FROM fact_orders"
    " WHERE profile_id IS NOT NULL AND date <= %(as_of)s GROUP BY profile_id, date"
    " ORDER BY profile_id, date"
)
_EPOCH = date(1970, 1, 1)


async def read_history(conn: Conn, as_of: date) -> ClvHistory:
    """Read every customer's order days and values up to `as_of`."""
    cur = await conn.execute(_HISTORY, {"as_of": as_of})
    ids: list[str] = []
    days: list[list[int]] = []
    values: list[list[float]] = []
    for row in await cur.fetchall():
        if not ids or ids[-1] != row["profile_id"]:
            ids.append(row["profile_id"])
            days.append([])
            values.append([])
        days[-1].append((row["date"] - _EPOCH).days)
        values[-1].append(float(row["value"]))
    return ClvHistory(
        as_of=as_of,
        profile_ids=ids,
        first=np.array([d[0] for d in days], dtype=np.int64),
        days=[np.array(d, dtype=np.int64) for d in days],
        values=[np.array(v, dtype=np.float64) for v in values],
    )


def _summary(h: ClvHistory, cut: int) -> tuple[np.ndarray, ...]:
    """Return (index, frequency, recency, T, monetary) of customers with an order before `cut`
    (days since epoch, exclusive), from their order days before it."""
    index, freq, rec, age, money = [], [], [], [], []
    for i, (d, v) in enumerate(zip(h.days, h.values, strict=True)):
        keep = d < cut
        if not keep.any():
            continue
        dd, vv = d[keep], v[keep]
        index.append(i)
        freq.append(dd.size - 1)
        rec.append(dd[-1] - dd[0])
        age.append(cut - 1 - dd[0])
        money.append(vv[1:].mean() if dd.size > 1 else 0.0)
    return (np.array(index, dtype=np.int64), np.array(freq, dtype=np.float64),
            np.array(rec, dtype=np.float64), np.array(age, dtype=np.float64),
            np.array(money, dtype=np.float64))  # fmt: skip


def _fitters() -> tuple[Any, Any, type[Exception]]:
    # lifetimes sets a pandas option pandas 3 deprecates; its import warns (docs/analytics.md).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from lifetimes import BetaGeoFitter, GammaGammaFitter
        from lifetimes.utils import ConvergenceError
    return BetaGeoFitter, GammaGammaFitter, ConvergenceError


@dataclass(frozen=True)
class _Model:
    r: float
    alpha: float
    a: float
    b: float
    p: float
    q: float
    v: float
    bg: Any = field(repr=False)
    gg: Any = field(repr=False)
    bg_penalizer: float = 0.0
    gg_penalizer: float = 0.0


# Penalizers tried in turn when lifetimes' optimiser does not converge (small stores).
PENALIZERS = (0.0, 0.001, 0.01, 0.1)


def _fit(freq: np.ndarray, rec: np.ndarray, age: np.ndarray, money: np.ndarray) -> _Model:
    """Fit both models; raise ModelUnavailableError when no penalizer converges."""
    bg_cls, gg_cls, not_converged = _fitters()
    repeat = (freq > 0) & (money > 0)
    fitted: list[Any] = []
    for make, args in ((bg_cls, (freq, rec, np.maximum(age, rec))),
                       (gg_cls, (freq[repeat], money[repeat]))):  # fmt: skip
        for penalizer in PENALIZERS:
            model = make(penalizer_coef=penalizer)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model.fit(*args)
            except not_converged:
                continue
            fitted.append(model)
            break
        else:
            raise ModelUnavailableError(f"{make.__name__} did not converge on these customers")
    bg, gg = fitted
    bp, gp = bg.params_, gg.params_
    return _Model(float(bp["r"]), float(bp["alpha"]), float(bp["a"]), float(bp["b"]),
                  float(gp["p"]), float(gp["q"]), float(gp["v"]), bg, gg,
                  float(bg.penalizer_coef), float(gg.penalizer_coef))  # fmt: skip


def _predict(
    m: _Model,
    freq: np.ndarray,
    rec: np.ndarray,
    age: np.ndarray,
    money: np.ndarray,
    horizon: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """Return per-customer expectations and interval bounds over `horizon` days."""
    age = np.maximum(age, rec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        orders = np.asarray(
            m.bg.conditional_expected_number_of_purchases_up_to_time(horizon, freq, rec, age)
        )
        alive = np.asarray(m.bg.conditional_probability_alive(freq, rec, age))
    alive = np.clip(np.nan_to_num(alive, nan=0.0), 0.0, 1.0)
    # The Gamma-Gamma conditional mean spend (one-order customers get the population mean).
    spend = (m.p * (m.v + freq * money)) / (m.p * freq + m.q - 1)
    spend = np.where(freq > 0, spend, m.p * m.v / (m.q - 1))
    rng = np.random.default_rng(seed)
    lo_o = np.empty(freq.size)
    hi_o = np.empty(freq.size)
    lo_r = np.empty(freq.size)
    hi_r = np.empty(freq.size)
    mc_orders = np.empty(freq.size)
    tail = (1 - LEVEL) / 2
    for start in range(0, freq.size, 5_000):
        s = slice(start, start + 5_000)
        n = freq[s].size
        live = rng.random((n, DRAWS)) < alive[s, None]
        lam = rng.gamma(m.r + freq[s, None], 1 / (m.alpha + age[s, None]), (n, DRAWS))
        drop = rng.beta(m.a, m.b + freq[s, None], (n, DRAWS))
        purchases = rng.poisson(lam * horizon)
        until_drop = rng.geometric(np.clip(drop, 1e-9, 1.0))
        count = np.where(live, np.minimum(purchases, until_drop), 0)
        nu = rng.gamma(m.p * freq[s, None] + m.q, 1 / (m.v + freq[s, None] * money[s, None]),
                       (n, DRAWS))  # fmt: skip
        shape = np.maximum(m.p * count, 1e-9)
        revenue = np.where(count > 0, rng.gamma(shape, 1 / nu), 0.0)
        lo_o[s], hi_o[s] = np.quantile(count, [tail, 1 - tail], axis=1)
        lo_r[s], hi_r[s] = np.quantile(revenue, [tail, 1 - tail], axis=1)
        mc_orders[s] = count.mean(axis=1)
    # lifetimes' closed form (a hypergeometric function) overflows for some histories: those
    # customers get the mean of their simulated draws instead.
    orders = np.where(np.isfinite(orders), orders, mc_orders)
    # Expected days to the next order while alive: the posterior mean gap (alpha+T)/(r+x-1).
    shape = m.r + freq
    gap = np.where(shape > 1, (m.alpha + age) / np.maximum(shape - 1, 1e-9), np.nan)
    return {
        "orders": orders, "alive": alive, "spend": spend, "clv": orders * spend,
        "orders_lo": lo_o, "orders_hi": hi_o, "clv_lo": lo_r, "clv_hi": hi_r, "gap": gap,
    }  # fmt: skip


@dataclass(frozen=True)
class ClvFit:
    """A fitted CLV model, its per-customer predictions and its backtest."""

    as_of: date
    train_start: date
    horizon_days: int
    parameters: dict[str, float]
    backtest: dict[str, Any]
    profile_ids: list[str]
    predictions: dict[str, np.ndarray]
    last_order: np.ndarray  # days since epoch


def _backtest(h: ClvHistory, cut_day: int, holdout: int, seed: int) -> dict[str, Any]:
    index, freq, rec, age, money = _summary(h, cut_day - holdout)
    if index.size < MIN_CUSTOMERS or int((freq > 0).sum()) < MIN_REPEAT_CUSTOMERS:
        return {"holdout_days": holdout, "customers": int(index.size), "skipped": True,
                "reason": "too few customers before the holdout"}  # fmt: skip
    try:
        model = _fit(freq, rec, age, money)
    except ModelUnavailableError as exc:
        return {"holdout_days": holdout, "customers": int(index.size), "skipped": True,
                "reason": str(exc)}  # fmt: skip
    pred = _predict(model, freq, rec, age, money, holdout, seed)
    real_orders = np.empty(index.size)
    real_revenue = np.empty(index.size)
    lo, hi = cut_day - holdout, cut_day
    for k, i in enumerate(index.tolist()):
        d, v = h.days[i], h.values[i]
        mask = (d >= lo) & (d < hi)
        real_orders[k] = mask.sum()
        real_revenue[k] = v[mask].sum()
    # Naive: each customer's historic order-day rate and mean order value, over the holdout.
    rate = (freq + 1) / np.maximum(age + 1, 1)
    mean_value = np.array([h.values[i][h.days[i] < lo].mean() for i in index.tolist()])
    naive_orders = rate * holdout
    within = (real_orders >= pred["orders_lo"]) & (real_orders <= pred["orders_hi"])
    within_r = (real_revenue >= pred["clv_lo"]) & (real_revenue <= pred["clv_hi"])
    return {
        "holdout_days": holdout,
        "customers": int(index.size),
        "mae_orders": float(np.abs(pred["orders"] - real_orders).mean()),
        "mae_orders_naive": float(np.abs(naive_orders - real_orders).mean()),
        "mae_revenue": float(np.abs(pred["clv"] - real_revenue).mean()),
        "mae_revenue_naive": float(np.abs(naive_orders * mean_value - real_revenue).mean()),
        "orders_predicted": float(pred["orders"].sum()),
        "orders_actual": float(real_orders.sum()),
        "coverage_orders": float(within.mean()),
        "coverage_revenue": float(within_r.mean()),
        "level": LEVEL,
        "calibration_parameters": {k: getattr(model, k) for k in "r alpha a b p q v".split()},
    }


def fit_clv(h: ClvHistory, *, horizon_days: int = HORIZON_DAYS, seed: int = 0) -> ClvFit:
    """Fit BG/NBD + Gamma-Gamma on every customer's history and backtest it (CPU-bound: run
    it off the event loop; the scheduler runs it in a worker process, so it must pickle).

    Raises SeriesTooShortError when there are too few customers (or repeat customers) to fit,
    ModelUnavailableError when the optimiser does not converge with any penalizer,
    InvalidParameterError for a horizon outside 1..365 days.
    """
    if not 1 <= horizon_days <= 365:
        raise InvalidParameterError(f"horizon_days must be within 1..365, got {horizon_days}")
    cut = (h.as_of - _EPOCH).days + 1
    index, freq, rec, age, money = _summary(h, cut)
    if index.size < MIN_CUSTOMERS or int((freq > 0).sum()) < MIN_REPEAT_CUSTOMERS:
        raise SeriesTooShortError(
            f"need at least {MIN_CUSTOMERS} customers and {MIN_REPEAT_CUSTOMERS} repeat customers"
            f" to fit, have {index.size} and {int((freq > 0).sum())}",
        )
    model = _fit(freq, rec, age, money)
    pred = _predict(model, freq, rec, age, money, horizon_days, seed)
    bad = [k for k, v in pred.items() if k != "gap" and not np.isfinite(v).all()]
    if bad:
        raise ModelUnavailableError(f"the fitted model gave non-finite {', '.join(bad)}")
    span = cut - int(h.first.min())
    holdout = max(7, min(90, span // 3))
    return ClvFit(
        as_of=h.as_of,
        train_start=_EPOCH + timedelta(days=int(h.first.min())),
        horizon_days=horizon_days,
        parameters={
            k: getattr(model, k) for k in "r alpha a b p q v bg_penalizer gg_penalizer".split()
        },
        backtest=_backtest(h, cut, holdout, seed),
        profile_ids=[h.profile_ids[i] for i in index.tolist()],
        predictions=pred,
        last_order=np.array([int(h.days[i][-1]) for i in index.tolist()], dtype=np.int64),
    )


def _money(x: float) -> Decimal:
    return Decimal(str(round(float(x), 2)))


async def store_clv(conn: Conn, fit: ClvFit, *, trained_at: datetime) -> int:
    """Store a fit (model, backtest, per-customer rows) in the caller's transaction; return
    the model's id. Older CLV models are removed (their rows cascade)."""
    cur = await conn.execute(
        "INSERT INTO forecast_models (series_key, model_name, parameters, train_start, train_end,"
        " horizon_days, trained_at) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
        [CLV_SERIES, MODEL_NAME, json.dumps({"model": fit.parameters, "backtest": fit.backtest,
         "level": LEVEL, "library": "lifetimes"}), fit.train_start, fit.as_of,
         fit.horizon_days, trained_at],
    )  # fmt: skip
    row = await cur.fetchone()
    assert row is not None
    model_id = int(row["id"])
    bt = fit.backtest
    if not bt.get("skipped"):
        for key, mae, naive, coverage in (
            ("orders", bt["mae_orders"], bt["mae_orders_naive"], bt["coverage_orders"]),
            ("revenue", bt["mae_revenue"], bt["mae_revenue_naive"], bt["coverage_revenue"]),
        ):
            for name, value, cov in ((MODEL_NAME, mae, coverage), ("naive", naive, None)):
                await conn.execute(
                    "INSERT INTO model_performance (model_id, series_key, model_name, folds, mae,"
                    " coverage, evaluated_at) VALUES (%s, %s, %s, 1, %s, %s, %s)",
                    [model_id, f"{CLV_SERIES}:{key}", name, value, cov, trained_at],
                )
    p = fit.predictions
    async with conn.cursor().copy(
        "COPY customer_clv (model_id, profile_id, predicted_orders, predicted_orders_low,"
        " predicted_orders_high, predicted_clv, predicted_clv_low, predicted_clv_high,"
        " p_alive, churn_probability, expected_order_value, expected_next_order) FROM STDIN"
    ) as copy:
        for k, pid in enumerate(fit.profile_ids):
            gap = p["gap"][k]
            nxt = None
            if np.isfinite(gap) and p["alive"][k] > 0.5:
                nxt = max(_EPOCH + timedelta(days=int(fit.last_order[k]) + int(gap + 0.5)),
                          fit.as_of + timedelta(days=1))  # fmt: skip
            await copy.write_row((
                model_id, pid, round(float(p["orders"][k]), 4), int(p["orders_lo"][k]),
                int(p["orders_hi"][k]), _money(p["clv"][k]), _money(p["clv_lo"][k]),
                _money(p["clv_hi"][k]), round(float(p["alive"][k]), 4),
                round(1 - float(p["alive"][k]), 4), _money(p["spend"][k]), nxt,
            ))  # fmt: skip
    await conn.execute(
        "DELETE FROM forecast_models WHERE series_key = %s AND id <> %s", [CLV_SERIES, model_id]
    )
    return model_id


async def fit_and_store(
    conn_run: Any, *, timezone: str, now: datetime, offload: Offload = in_thread
) -> str:
    """Fit on every customer's orders through the store's today and store the model; return
    a one-line summary. `conn_run` is `Database.run`; the fit runs through `offload` (the
    scheduler passes its worker processes: a fit holds the GIL for tens of seconds).

    Raises SeriesTooShortError when there are too few customers to fit,
    ModelUnavailableError when the model does not converge, AnalysisUnavailableError when
    the worker process died.
    """
    from klaviyo_analytics.analytics.periods import local_today

    today = local_today(timezone, now)
    history = await conn_run(lambda c: read_history(c, today), readonly=True)
    fit = await offload(fit_clv, history)

    async def store(conn: Conn) -> int:
        return await store_clv(conn, fit, trained_at=now)

    model_id = await conn_run(store)
    bt = fit.backtest
    return (
        f"CLV model {model_id}: {len(fit.profile_ids):,} customers as of {today}; backtest MAE"
        f" orders {bt.get('mae_orders', float('nan')):.3f} (naive"
        f" {bt.get('mae_orders_naive', float('nan')):.3f})"
    )


@dataclass(frozen=True)
class StoredModel:
    """The latest stored CLV model."""

    id: int
    trained_at: datetime
    train_start: date
    as_of: date
    horizon_days: int
    parameters: dict[str, float]
    backtest: dict[str, Any]
    level: float
    library: str


async def stored_model(conn: Conn) -> StoredModel | None:
    """Return the latest stored CLV model, or None before the first fit."""
    cur = await conn.execute(
        "SELECT * FROM forecast_models WHERE series_key = %s ORDER BY trained_at DESC, id DESC"
        " LIMIT 1",
        [CLV_SERIES],
    )
    row = await cur.fetchone()
    if row is None:
        return None
    params = row["parameters"]
    return StoredModel(
        id=int(row["id"]), trained_at=row["trained_at"], train_start=row["train_start"],
        as_of=row["train_end"], horizon_days=int(row["horizon_days"]),
        parameters=params["model"], backtest=params["backtest"], level=float(params["level"]),
        library=str(params.get("library", "")),
    )  # fmt: skip


@dataclass(frozen=True)
class ClvProfile:
    """One customer's historic (exact, now) and predicted CLV (of the stored model)."""

    profile_id: str
    historic_clv: Decimal
    historic_orders: int
    predicted_orders: Decimal
    predicted_orders_low: int
    predicted_orders_high: int
    predicted_clv: Decimal
    predicted_clv_low: Decimal
    predicted_clv_high: Decimal
    churn_probability: Decimal
    expected_order_value: Decimal
    expected_next_order: date | None
    klaviyo: KlaviyoPrediction | None


@dataclass(frozen=True)
class KlaviyoPrediction:
    """Klaviyo's own predictive analytics of the profile, as last synced (each may be null:
    Klaviyo gave none)."""

    historic_clv: Decimal | None
    predicted_clv: Decimal | None
    total_clv: Decimal | None
    historic_orders: Decimal | None
    predicted_orders: Decimal | None
    churn_probability: Decimal | None
    average_order_value: Decimal | None
    average_days_between_orders: Decimal | None
    expected_next_order: date | None


# Klaviyo's values (klaviyo_profiles, synced with the profiles stream) beside ours.
_KLAVIYO = (
    "k.historic_clv AS k_historic_clv, k.predicted_clv AS k_predicted_clv,"
    " k.total_clv AS k_total_clv, k.historic_number_of_orders AS k_historic_orders,"
    " k.predicted_number_of_orders AS k_predicted_orders,"
    " k.churn_probability AS k_churn_probability, k.average_order_value AS k_average_order_value,"
    " k.average_days_between_orders AS k_average_days_between_orders,"
    " (k.expected_date_of_next_order AT TIME ZONE %(tz)s)::date AS k_expected_next_order"
)
_PROFILES = (
    "SELECT c.*, coalesce(h.value, 0) AS historic_clv, coalesce(h.orders, 0) AS historic_orders,"
    " " + _KLAVIYO + ", k.id IS NOT NULL AND NOT k.is_stub AS k_synced"
    " FROM customer_clv c LEFT JOIN LATERAL (SELECT sum(value) AS value, count(*) AS orders"
    "  FROM fact_orders o WHERE o.profile_id = c.profile_id) h ON true"
    " LEFT JOIN klaviyo_profiles k ON k.id = c.profile_id"
    " WHERE c.model_id = %(model)s ORDER BY c.predicted_clv DESC, c.profile_id"
    " LIMIT %(limit)s OFFSET %(offset)s"
)


def _optional(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value)


def _klaviyo(r: dict[str, Any]) -> KlaviyoPrediction | None:
    if not r["k_synced"]:
        return None
    return KlaviyoPrediction(
        historic_clv=_optional(r["k_historic_clv"]), predicted_clv=_optional(r["k_predicted_clv"]),
        total_clv=_optional(r["k_total_clv"]), historic_orders=_optional(r["k_historic_orders"]),
        predicted_orders=_optional(r["k_predicted_orders"]),
        churn_probability=_optional(r["k_churn_probability"]),
        average_order_value=_optional(r["k_average_order_value"]),
        average_days_between_orders=_optional(r["k_average_days_between_orders"]),
        expected_next_order=r["k_expected_next_order"],
    )  # fmt: skip


def _profile(r: dict[str, Any]) -> ClvProfile:
    return ClvProfile(
        profile_id=r["profile_id"], historic_clv=Decimal(r["historic_clv"]),
        historic_orders=int(r["historic_orders"]), predicted_orders=Decimal(r["predicted_orders"]),
        predicted_orders_low=int(r["predicted_orders_low"]),
        predicted_orders_high=int(r["predicted_orders_high"]),
        predicted_clv=Decimal(r["predicted_clv"]), predicted_clv_low=Decimal(r["predicted_clv_low"]),
        predicted_clv_high=Decimal(r["predicted_clv_high"]),
        churn_probability=Decimal(r["churn_probability"]),
        expected_order_value=Decimal(r["expected_order_value"]),
        expected_next_order=r["expected_next_order"], klaviyo=_klaviyo(r),
    )  # fmt: skip


async def stored_profiles(
    conn: Conn, model_id: int, *, limit: int, offset: int, timezone: str = "UTC"
) -> tuple[int, list[ClvProfile]]:
    """Return (total, page) of the model's customers by predicted CLV (highest first), each
    with Klaviyo's predictions where the profile was synced (`timezone` dates Klaviyo's
    expected next order in the store's zone)."""
    cur = await conn.execute(
        "SELECT count(*) AS n FROM customer_clv WHERE model_id = %s", [model_id]
    )
    row = await cur.fetchone()
    cur = await conn.execute(
        _PROFILES, {"model": model_id, "limit": limit, "offset": offset, "tz": timezone}
    )
    return (int(row["n"]) if row else 0), [_profile(r) for r in await cur.fetchall()]


# Upper edges of the predicted-CLV histogram (the last bucket is open).
BUCKETS = (10, 25, 50, 100, 250, 500, 1000, 2500)


@dataclass(frozen=True)
class KlaviyoComparison:
    """Klaviyo's predictions summed over the model's customers that have them, beside ours
    summed over the same customers; and how many synced profiles have any."""

    customers: int  # the model's customers with a Klaviyo predicted CLV
    predicted_clv: Decimal  # Klaviyo's, summed over them
    predicted_clv_ours: Decimal  # ours, over the same customers
    predicted_orders: Decimal  # Klaviyo's (where given), over them
    predicted_orders_ours: Decimal
    historic_clv: Decimal  # Klaviyo's historic CLV (where given), over them
    profiles: int  # synced profiles (customers or not) with a Klaviyo predicted CLV
    profiles_predicted_clv: Decimal  # Klaviyo's predicted CLV summed over those


@dataclass(frozen=True)
class ClvTotals:
    """Sums over every customer, the predicted-CLV distribution, and Klaviyo's beside ours."""

    customers: int
    historic_clv: Decimal
    predicted_clv: Decimal
    predicted_orders: Decimal
    distribution: list[dict[str, Any]]
    klaviyo: KlaviyoComparison


# One scan of the profiles with a Klaviyo prediction, joined to the model's customers: the
# sums over the customers that both predict for, and over every such profile.
_COMPARISON = (
    "SELECT count(c.profile_id) AS n,"
    " coalesce(sum(k.predicted_clv) FILTER (WHERE c.profile_id IS NOT NULL), 0) AS k_clv,"
    " coalesce(sum(c.predicted_clv), 0) AS clv,"
    " coalesce(sum(k.predicted_number_of_orders) FILTER (WHERE c.profile_id IS NOT NULL), 0)"
    "  AS k_orders,"
    " coalesce(sum(c.predicted_orders), 0) AS orders,"
    " coalesce(sum(k.historic_clv) FILTER (WHERE c.profile_id IS NOT NULL), 0) AS k_historic,"
    " count(*) AS profiles, coalesce(sum(k.predicted_clv), 0) AS profiles_clv"
    " FROM klaviyo_profiles k"
    " LEFT JOIN customer_clv c ON c.profile_id = k.id AND c.model_id = %(model)s"
    " WHERE k.predicted_clv IS NOT NULL"
)


async def stored_totals(conn: Conn, model_id: int) -> ClvTotals:
    """Return the sums (historic exact from `fact_orders`) and the distribution."""
    cur = await conn.execute(
        "SELECT count(*) AS n, coalesce(sum(predicted_clv), 0) AS clv,"
        " coalesce(sum(predicted_orders), 0) AS orders,"
        " width_bucket(predicted_clv, %(edges)s::numeric[]) AS bucket"
        " FROM customer_clv WHERE model_id = %(model)s GROUP BY ROLLUP (bucket)",
        {"model": model_id, "edges": list(BUCKETS)},
    )
    rows = await cur.fetchall()
    total = next((r for r in rows if r["bucket"] is None), None)
    counts = {int(r["bucket"]): int(r["n"]) for r in rows if r["bucket"] is not None}
    cur = await conn.execute(
        "SELECT coalesce(sum(value), 0) AS v FROM fact_orders WHERE profile_id IS NOT NULL"
    )
    hist = await cur.fetchone()
    cur = await conn.execute(_COMPARISON, {"model": model_id})
    same = await cur.fetchone()
    assert same is not None  # an aggregate always answers one row
    klaviyo = KlaviyoComparison(
        customers=int(same["n"]), predicted_clv=Decimal(same["k_clv"]),
        predicted_clv_ours=Decimal(same["clv"]), predicted_orders=Decimal(same["k_orders"]),
        predicted_orders_ours=Decimal(same["orders"]), historic_clv=Decimal(same["k_historic"]),
        profiles=int(same["profiles"]), profiles_predicted_clv=Decimal(same["profiles_clv"]),
    )  # fmt: skip
    edges = (0, *BUCKETS)
    distribution = [
        {"from": edges[k], "to": BUCKETS[k] if k < len(BUCKETS) else None,
         "customers": counts.get(k, 0)}
        for k in range(len(edges))
    ]  # fmt: skip
    return ClvTotals(
        customers=int(total["n"]) if total else 0,
        historic_clv=Decimal(hist["v"]) if hist else Decimal(0),
        predicted_clv=Decimal(total["clv"]) if total else Decimal(0),
        predicted_orders=Decimal(total["orders"]) if total else Decimal(0),
        distribution=distribution,
        klaviyo=klaviyo,
    )
