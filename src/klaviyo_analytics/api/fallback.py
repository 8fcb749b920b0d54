"""Answers from the Klaviyo API for data the database does not hold yet, strictly bounded.

Only while a stream has never completed a sync may a reader's GET answer from Klaviyo (source
"klaviyo"), at most FALLBACK_ANSWERS_PER_MINUTE such answers a minute per server, and start
one background sync of that stream (once per server process). After the stream's first
successful sync, GETs answer from the database only: an empty range is zeros, labelled by
`coverage`. Later syncs are an admin's POST /api/sync/... or the scheduler's.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from klaviyo_analytics.analytics import metric_names as names
from klaviyo_analytics.analytics.kpis import (
    CENT,
    ZERO,
    Change,
    Compare,
    Overview,
    change,
    comparison,
    count_change,
    ratio,
)
from klaviyo_analytics.analytics.periods import DateRange
from klaviyo_analytics.api.deps import AppState
from klaviyo_analytics.api.errors import ConflictError
from klaviyo_analytics.db.pool import Conn
from klaviyo_analytics.db.repos import operations as ops
from klaviyo_analytics.klaviyo import KlaviyoClient, Metric

logger = logging.getLogger(__name__)


Coverage = Literal["data", "empty", "before_history", "after_history", "no_data"]


async def may_ask_klaviyo(state: AppState, stream: str) -> bool:
    """Say whether a GET may answer from Klaviyo for `stream`, spending one fallback token.

    Only when a Klaviyo key is configured, the stream never completed a sync, and the
    server's fallback budget has a token left.
    """
    if state.klaviyo is None:
        return False
    synced = await state.db.run(lambda c: ops.last_success(c, stream), readonly=True)
    if synced is not None:
        return False
    return state.fallback_budget.take("klaviyo") == 0


def sync_once(state: AppState, stream: str) -> bool:
    """Start the one background sync a GET may cause for `stream`; say whether it started.

    Each stream gets at most one such sync per server process, and none while it is syncing.
    """
    if state.syncs is None or stream in state.fallback_syncs or state.syncs.busy(stream):
        return False
    try:
        state.syncs.start_in_background(stream)
    except ConflictError:
        return False
    state.fallback_syncs.add(stream)
    logger.info("%s was never synced: started its first background sync", stream)
    return True


async def klaviyo_metrics(client: KlaviyoClient) -> list[Metric]:
    """Return every metric of the account from the API."""
    found: list[Metric] = []
    async for page in client.iter_metrics():
        found.extend(page.records)
    return found


async def klaviyo_overview(
    client: KlaviyoClient,
    rng: DateRange,
    tz: str,
    metric_ids: dict[str, str],
    compare: Compare = "previous",
) -> Overview:
    """Build the overview of `rng` from POST /api/metric-aggregates (daily buckets in `tz`).

    One query per metric covers the previous range and this one. Without per-order facts some
    figures are approximations: unique customers add up daily uniques; rates divide unique
    opens and clicks by emails received; net revenue subtracts "Refunded Order" when the
    account has it; subscribers are not available (0). Raises KlaviyoError subclasses.
    """
    if not metric_ids:
        metric_ids = {m.name: m.id for m in await klaviyo_metrics(client) if m.name}
    prev = comparison(rng, compare)
    lo, _ = prev.bounds(tz)
    _, hi = rng.bounds(tz)
    zone = ZoneInfo(tz)

    async def daily(name: str) -> dict[str, tuple[Decimal, Decimal]]:
        """Return (this range, previous range) totals per measurement of metric `name`."""
        metric_id = metric_ids.get(name)
        if metric_id is None:
            return {}
        result = await client.query_metric_aggregates(
            metric_id=metric_id, start=lo, end=hi, interval="day", timezone=tz
        )
        totals: dict[str, list[Decimal]] = {}
        for row in result.data:
            for measure, values in row.measurements.items():
                acc = totals.setdefault(measure, [ZERO, ZERO])
                for at, value in zip(result.dates, values, strict=False):
                    day = at.astimezone(zone).date() if at.tzinfo else at.date()
                    if value is None:
                        continue
                    if rng.start <= day <= rng.end:
                        acc[0] += Decimal(str(value))
                    elif prev.start <= day <= prev.end:
                        acc[1] += Decimal(str(value))
        return {m: (v[0], v[1]) for m, v in totals.items()}

    orders = await daily(names.PLACED_ORDER)
    refunds = await daily(names.REFUNDED_ORDER)
    received = await daily(names.RECEIVED_EMAIL)
    opened = await daily(names.OPENED_EMAIL)
    clicked = await daily(names.CLICKED_EMAIL)
    forms = await daily(names.SUBMITTED_FORM)

    def get(figures: dict[str, tuple[Decimal, Decimal]], measure: str, which: int) -> Decimal:
        return figures.get(measure, (ZERO, ZERO))[which]

    def rates(numerator: dict[str, tuple[Decimal, Decimal]], measure: str) -> Change:
        return change(
            ratio(get(numerator, measure, 0), get(received, "count", 0)),
            ratio(get(numerator, measure, 1), get(received, "count", 1)),
        )

    revenue = [get(orders, "sum_value", i).quantize(CENT) for i in (0, 1)]
    count = [get(orders, "count", i) for i in (0, 1)]
    refunded = [get(refunds, "sum_value", i).quantize(CENT) for i in (0, 1)]
    return Overview(
        range=rng,
        previous_range=prev,
        compare=compare,
        revenue=change(revenue[0], revenue[1]),
        net_revenue=change(revenue[0] - refunded[0], revenue[1] - refunded[1]),
        refunds=change(refunded[0], refunded[1]),
        orders=count_change(count[0], count[1]),
        aov=change(ratio(revenue[0], count[0], CENT), ratio(revenue[1], count[1], CENT)),
        unique_customers=count_change(*(get(orders, "unique", i) for i in (0, 1))),
        subscribers=count_change(0, 0),
        open_rate=rates(opened, "unique"),
        click_rate=rates(clicked, "unique"),
        conversion_rate=rates(orders, "unique"),
        form_submissions=count_change(*(get(forms, "count", i) for i in (0, 1))),
        revenue_by_channel={},
        data_through=None,
        subscribers_source="unavailable",
    )


async def coverage(conn: Conn, lo: datetime, hi: datetime) -> Coverage:
    """Say what the database holds for [lo, hi): events, an empty stretch of the synced
    history, a range before the oldest event or after what was synced, or no events at all."""
    if await ops.has_events_between(conn, lo, hi):
        return "data"
    oldest = await ops.oldest_event(conn)
    if oldest is None:
        return "no_data"
    if hi <= oldest:
        return "before_history"
    synced = await ops.events_synced_through(conn)
    if synced is None or lo >= synced:
        return "after_history"
    return "empty"
