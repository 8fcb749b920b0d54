"""Customer analytics: cohorts, RFM, CLV, products and the shopping funnel, from stored facts.

Nothing here fits a model: CLV is read from what the scheduler's `clv` job stored."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import MISSING, fields
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, get_type_hints

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, create_model

from klaviyo_analytics.analytics import clv, customers, products
from klaviyo_analytics.analytics.clv import ClvProfile, KlaviyoComparison
from klaviyo_analytics.analytics.customers import Cohort, RfmProfile, RfmSummary
from klaviyo_analytics.analytics.periods import local_today
from klaviyo_analytics.analytics.products import FunnelStep, ProductRow
from klaviyo_analytics.api.auth import Principal
from klaviyo_analytics.api.deps import (
    AppState,
    Caller,
    KnownQuery,
    Range,
    State,
    _parse_date,
    answer,
    ttl_for,
)
from klaviyo_analytics.api.models import ERROR_RESPONSES, RangeModel, Sourced
from klaviyo_analytics.db.pool import Conn

router = APIRouter(prefix="/api", tags=["customers"], responses=ERROR_RESPONSES,
                   dependencies=[KnownQuery])  # fmt: skip
# Synced events change every answer here; the events stream invalidates this group.
GROUP = "analytics"

AsOf = Annotated[
    str | None,
    Query(description="the day to score on, YYYY-MM-DD in the store's zone (default today)"),
]
GroupName = Literal["Champions", "Loyal", "Recent", "At risk", "Inactive", "Needs attention"]
Limit = Annotated[int, Query(ge=1, le=1000, description="rows per page")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="rows to skip")]


class CohortsResponse(Sourced):
    """Monthly cohorts by first ever order, with one period per month since."""

    timezone: str
    range: RangeModel
    cohorts: list[Cohort]


def _dataclass_fields(kind: type[Any]) -> dict[str, Any]:
    hints = get_type_hints(kind)
    return {
        f.name: (hints[f.name], f.default if f.default is not MISSING else ...)
        for f in fields(kind)
    }


# The analytics `RfmSummary` (one definition of its fields) plus where it came from: built
# from the dataclass, so a field added there appears here.
RfmResponse: Any = create_model(
    "RfmResponse",
    __base__=Sourced,
    __doc__="RFM groups on `as_of`, and movement between groups since `compared_to`.",
    timezone=(str, ...),
    **_dataclass_fields(RfmSummary),
)


class RfmProfilesResponse(Sourced):
    """One page of customers with their RFM values."""

    timezone: str
    as_of: date
    group: str | None
    total: int
    limit: int
    offset: int
    profiles: list[RfmProfile]


class ProductsResponse(Sourced):
    """Every product sold in the range."""

    timezone: str
    range: RangeModel
    products: list[ProductRow]


class FunnelResponse(Sourced):
    """Viewed Product → Started Checkout → Placed Order, overall and per last-touch channel."""

    timezone: str
    range: RangeModel
    window_days: int
    steps: list[FunnelStep]
    channels: dict[str, list[FunnelStep]]


async def _as_of(state: AppState, value: str | None) -> tuple[str, date]:
    tz = await state.timezone()
    day = _parse_date("as_of", value)
    return tz, day if day is not None else local_today(tz, state.clock())


async def _read(
    request: Request,
    state: AppState,
    principal: Principal,
    produce: Callable[[Conn], Awaitable[Sourced]],
) -> Response:
    async def body() -> Sourced:
        return await state.db.run(produce, readonly=True)

    return await answer(
        request, state, principal, group=GROUP, ttl_s=ttl_for(state, GROUP), produce=body
    )


@router.get("/customers/cohorts", response_model=CohortsResponse, summary="Monthly cohorts")
async def customer_cohorts(
    request: Request, state: State, principal: Caller, rq: Range
) -> Response:
    """Return customers grouped by the month of their first ever order (first orders in the
    range), with active customers, orders and revenue in each calendar month since."""

    async def produce(conn: Conn) -> Sourced:
        found = await customers.cohorts(conn, rq.range, rq.today)
        return CohortsResponse(
            source="database", timezone=rq.tz, range=RangeModel.model_validate(rq.range),
            cohorts=found,
        )  # fmt: skip

    return await _read(request, state, principal, produce)


@router.get("/customers/rfm", response_model=RfmResponse, summary="RFM groups and movement")
async def customer_rfm(
    request: Request, state: State, principal: Caller, as_of: AsOf = None
) -> Response:
    """Return the RFM groups of every customer with an order on or before `as_of`."""
    tz, day = await _as_of(state, as_of)

    async def produce(conn: Conn) -> Sourced:
        s = await customers.rfm(conn, day)
        found: Sourced = RfmResponse(
            source="database", timezone=tz,
            **{f.name: getattr(s, f.name) for f in fields(RfmSummary)},
        )  # fmt: skip
        return found

    return await _read(request, state, principal, produce)


@router.get(
    "/customers/rfm/profiles", response_model=RfmProfilesResponse, summary="Customers' RFM values"
)
async def customer_rfm_profiles(
    request: Request,
    state: State,
    principal: Caller,
    as_of: AsOf = None,
    group: Annotated[GroupName | None, Query(description="only this group")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Response:
    """Return customers with their raw recency, frequency, monetary, scores and group, by
    monetary value (highest first)."""
    tz, day = await _as_of(state, as_of)

    async def produce(conn: Conn) -> Sourced:
        total, page = await customers.rfm_profiles(
            conn, day, group=group, limit=limit, offset=offset
        )
        return RfmProfilesResponse(
            source="database", timezone=tz, as_of=day, group=group, total=total, limit=limit,
            offset=offset, profiles=page,
        )  # fmt: skip

    return await _read(request, state, principal, produce)


@router.get("/products", response_model=ProductsResponse, summary="Products sold in a range")
async def product_table(request: Request, state: State, principal: Caller, rq: Range) -> Response:
    """Return every product with an order line in the range, by revenue."""

    async def produce(conn: Conn) -> Sourced:
        rows = await products.products(conn, rq.range)
        return ProductsResponse(
            source="database", timezone=rq.tz, range=RangeModel.model_validate(rq.range),
            products=rows,
        )  # fmt: skip

    return await _read(request, state, principal, produce)


@router.get("/funnel", response_model=FunnelResponse, summary="The shopping funnel")
async def shopping_funnel(request: Request, state: State, principal: Caller, rq: Range) -> Response:
    """Return how many profiles viewed a product in the range, then started a checkout, then
    placed an order, each within 7 days of the previous step."""

    async def produce(conn: Conn) -> Sourced:
        found = await products.funnel(conn, rq.range)
        return FunnelResponse(
            source="database", timezone=rq.tz, range=RangeModel.model_validate(rq.range),
            window_days=products.FUNNEL_WINDOW.days, steps=found.steps, channels=found.channels,
        )  # fmt: skip

    return await _read(request, state, principal, produce)


class ClvModelInfo(BaseModel):
    """The stored model: when it was fitted, on what, its parameters and its backtest."""

    trained_at: datetime
    train_start: date
    as_of: date
    horizon_days: int
    library: str
    level: float
    parameters: dict[str, float]
    backtest: dict[str, Any]


class ClvResponse(Sourced):
    """Historic (exact) and predicted CLV summed over customers, the distribution of predicted
    CLV and the top predicted customers; `model` is null before the first fit."""

    timezone: str
    model: ClvModelInfo | None
    customers: int
    historic_clv: Decimal
    predicted_clv: Decimal
    predicted_orders: Decimal
    distribution: list[dict[str, Any]]
    top: list[ClvProfile]
    klaviyo: KlaviyoComparison | None = Field(
        description="Klaviyo's own predictions (synced with the profiles stream) summed over "
        "the model's customers that have them, beside ours over the same customers; null "
        "before the first fit"
    )


class ClvProfilesResponse(Sourced):
    """One page of customers by predicted CLV."""

    timezone: str
    as_of: date | None
    total: int
    limit: int
    offset: int
    profiles: list[ClvProfile]


Top = Annotated[int, Query(ge=1, le=100, description="how many top customers")]


def _model_info(m: clv.StoredModel) -> ClvModelInfo:
    return ClvModelInfo(
        trained_at=m.trained_at, train_start=m.train_start, as_of=m.as_of,
        horizon_days=m.horizon_days, library=m.library, level=m.level,
        parameters=m.parameters, backtest=m.backtest,
    )  # fmt: skip


@router.get("/customers/clv", response_model=ClvResponse, summary="Customer lifetime value")
async def customer_clv(
    request: Request, state: State, principal: Caller, top: Top = 10
) -> Response:
    """Return the stored CLV model's sums, distribution and top customers (never fits)."""
    tz = await state.timezone()

    async def produce(conn: Conn) -> Sourced:
        model = await clv.stored_model(conn)
        if model is None:
            return ClvResponse(
                source="database", timezone=tz, model=None, customers=0,
                historic_clv=Decimal(0), predicted_clv=Decimal(0), predicted_orders=Decimal(0),
                distribution=[], top=[], klaviyo=None,
            )  # fmt: skip
        totals = await clv.stored_totals(conn, model.id)
        _, best = await clv.stored_profiles(conn, model.id, limit=top, offset=0, timezone=tz)
        return ClvResponse(
            source="database", timezone=tz, model=_model_info(model), customers=totals.customers,
            historic_clv=totals.historic_clv, predicted_clv=totals.predicted_clv,
            predicted_orders=totals.predicted_orders, distribution=totals.distribution, top=best,
            klaviyo=totals.klaviyo,
        )  # fmt: skip

    return await _read(request, state, principal, produce)


@router.get("/customers/clv/profiles", response_model=ClvProfilesResponse, summary="Customers' CLV")
async def customer_clv_profiles(
    request: Request, state: State, principal: Caller, limit: Limit = 100, offset: Offset = 0
) -> Response:
    """Return customers by predicted CLV with historic CLV, interval, orders, churn
    probability and expected next order (from the stored model; never fits)."""
    tz = await state.timezone()

    async def produce(conn: Conn) -> Sourced:
        model = await clv.stored_model(conn)
        total, page = 0, list[ClvProfile]()
        if model is not None:
            total, page = await clv.stored_profiles(
                conn, model.id, limit=limit, offset=offset, timezone=tz
            )
        return ClvProfilesResponse(
            source="database", timezone=tz, as_of=model.as_of if model else None, total=total,
            limit=limit, offset=offset, profiles=page,
        )  # fmt: skip

    return await _read(request, state, principal, produce)
