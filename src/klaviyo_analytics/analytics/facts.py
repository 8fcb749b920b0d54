"""Daily facts (revenue, engagement, conversions, orders, forms) kept exact from raw events.

`refresh_facts` is the sync's after-events hook: for the events in [lo, hi] it recomputes, from
raw events, every local date of the store whose facts those events can change (delete +
insert), so a re-sync or a late event leaves the facts equal to what the events give:

* the dates of [lo, hi] themselves, extended by the longest last-touch window (a late click can
  change the attribution of orders up to that long after it);
* the date of the first later event of each (message, profile, metric) pair that an event in
  [lo, hi] may now precede (unique opens, clicks and recipients count on the first day);
* dates of refunds of orders on those dates (a refund follows its order's channel);

after rewriting the order lines of [lo, hi] (`order_lines`), which the customer and product
facts it ends with read. `refresh_funnel`, a hook of its own, recomputes the funnel's
profile-days those events can change (`funnel_facts`); it reads only events, so the sync runs
it beside the facts, on another connection.

Each date is recomputed once per refresh, in chunks of at most a month of dates, oldest first
(a refund finds its order already attributed); the statements read only the events of a chunk
and one index probe per pair, order or profile, so a refresh costs what it touches (see
docs/analytics.md, "What a refresh costs"). `rebuild_facts` recomputes everything from scratch.
Definitions: docs/analytics.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from psycopg import sql

from klaviyo_analytics.analytics import attribution as q
from klaviyo_analytics.analytics.calendar import refresh_dim_time
from klaviyo_analytics.analytics.customer_facts import (
    CUSTOMER_FACT_TABLES,
    rebuild_customer_facts,
    update_customer_facts,
)
from klaviyo_analytics.analytics.funnel_facts import (
    FUNNEL_FACT_TABLE,
    rebuild_funnel_facts,
    update_funnel_facts,
)
from klaviyo_analytics.analytics.metric_names import MetricIds, metric_ids
from klaviyo_analytics.analytics.order_lines import refresh_order_lines
from klaviyo_analytics.analytics.periods import zone
from klaviyo_analytics.db.pool import Conn

__all__ = [
    "CHANNELS",
    "EMAIL_TOUCH_WINDOW",
    "FACT_TABLES",
    "SMS_TOUCH_WINDOW",
    "rebuild_facts",
    "refresh_dim_time",
    "refresh_facts",
    "refresh_facts_for_dates",
]

logger = logging.getLogger(__name__)

CHANNELS = ("email_campaign", "email_flow", "sms_campaign", "sms_flow", "unattributed")
MESSAGE_CHANNELS = CHANNELS[:4]
EMAIL_TOUCH_WINDOW = timedelta(hours=120)
SMS_TOUCH_WINDOW = timedelta(hours=24)
FACT_TABLES = q.FACT_TABLES
# The longest span of dates one set of statements covers: it bounds each statement's work (and
# keeps it under the statement timeout) however long the refreshed range is.
CHUNK_DAYS = 31
REBUILD_CHUNK_DAYS = CHUNK_DAYS


def _bounds(dates: Iterable[date], tz: str) -> tuple[datetime, datetime]:
    z = zone(tz)
    ordered = sorted(dates)
    # A day more on each side: harmless for the index range, and safe across odd DST rules.
    lo = datetime.combine(ordered[0] - timedelta(days=1), time(0), tzinfo=z)
    hi = datetime.combine(ordered[-1] + timedelta(days=2), time(0), tzinfo=z)
    return lo.astimezone(UTC), hi.astimezone(UTC)


def _params(
    ids: MetricIds,
    dates: list[date],
    tz: str,
    email_window: timedelta,
    sms_window: timedelta,
) -> dict[str, Any]:
    lo, hi = _bounds(dates, tz)
    return {
        "tz": tz,
        "dates": dates,
        "first": min(dates),
        "last": max(dates),
        "lo": lo,
        "hi": hi,
        "email_window": email_window,
        "sms_window": sms_window,
        "email_touch": ids.opened_email + ids.clicked_email,
        "sms_touch": ids.clicked_sms,
        "orders": ids.placed_order,
        "refunded": ids.refunded_order,
        "received": ids.received_email + ids.received_sms,
        "bounced": ids.bounced_email,
        "opened": ids.opened_email,
        "clicked": ids.clicked_email + ids.clicked_sms,
        "unsubscribed": ids.unsubscribed,
        "sms": ids.sms,
        "engagement": ids.engagement,
        "viewed_form": ids.viewed_form,
        "submitted_form": ids.submitted_form,
    }


async def _dates_of(conn: Conn, query: Any, params: dict[str, Any]) -> set[date]:
    cur = await conn.execute(query, params)
    return {row["date"] for row in await cur.fetchall()}


def _chunks(days: list[date]) -> list[list[date]]:
    """Cut sorted dates into runs whose first and last date are under CHUNK_DAYS apart."""
    runs: list[list[date]] = []
    for day in days:
        if runs and (day - runs[-1][0]).days < CHUNK_DAYS:
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


async def _write_chunk(conn: Conn, params: dict[str, Any]) -> tuple[int, set[date], set[str]]:
    """Recompute every fact table for one chunk of dates; return the rows written, the dates
    of refunds of the orders on those dates and the profiles of the orders deleted there.
    Orders go first: the other facts read their attribution from `fact_orders`."""
    cur = await conn.execute(q.DELETE_ORDERS, params)
    deleted = {row["profile_id"] for row in await cur.fetchall()}
    for statement in q.DELETE_FACTS:
        await conn.execute(statement, params)
    cur = await conn.execute(q.INSERT_ORDERS, params)
    written = max(cur.rowcount, 0)
    refunds = await _dates_of(conn, q.REFUND_DATES, params)
    for statement in (
        q.INSERT_MESSAGE_ENGAGEMENT,
        q.INSERT_FORMS,
        q.INSERT_CONVERSIONS,
        q.INSERT_REVENUE,
        q.INSERT_ENGAGEMENT,
        q.INSERT_CONVERTED,
    ):
        cur = await conn.execute(statement, params)
        written += max(cur.rowcount, 0)
    return written, refunds, deleted


async def refresh_facts_for_dates(
    conn: Conn,
    dates: Iterable[date],
    timezone: str,
    *,
    email_window: timedelta = EMAIL_TOUCH_WINDOW,
    sms_window: timedelta = SMS_TOUCH_WINDOW,
    ids: MetricIds | None = None,
    predecessors: bool = True,
    lines: tuple[datetime, datetime] | None = None,
) -> int:
    """Recompute every fact table for exactly these local dates (and the dates of refunds of
    their orders); return the rows written.

    Dates are done in chunks of at most CHUNK_DAYS, oldest first. A refund on a date done
    before its order's chunk (or not among the dates) is recomputed at the end. Then, unless
    `predecessors` is False (a caller that rewrites many chunks rebuilds them once at the
    end), the per-order columns and the customer and product facts are brought up to date
    for the profiles the refresh touched (`customer_facts.update_customer_facts`; the order
    lines of the dates must be current; `lines` is the time range whose orders' lines were
    rewritten, None for any). Raises InvalidParameterError for an unknown zone.
    """
    days = sorted(set(dates))
    if not days:
        return 0
    ids = ids or await metric_ids(conn)
    pending = set(days)
    stale: set[date] = set()
    deleted: set[str] = set()
    written = 0
    for chunk in _chunks(days):
        params = _params(ids, chunk, timezone, email_window, sms_window)
        rows, refunds, gone = await _write_chunk(conn, params)
        written += rows
        deleted |= gone
        pending -= set(chunk)
        stale |= {d for d in refunds if d not in pending and d not in chunk}
    for chunk in _chunks(sorted(stale)):
        params = _params(ids, chunk, timezone, email_window, sms_window)
        rows, _, gone = await _write_chunk(conn, params)
        written += rows
        deleted |= gone
    if predecessors:
        await update_customer_facts(
            conn,
            since=min(days[0], *stale) if stale else days[0],
            profiles=deleted,
            dates=set(days) | stale,
            lines=lines,
        )
    return written


async def refresh_facts(
    conn: Conn,
    lo: datetime,
    hi: datetime,
    timezone: str,
    *,
    email_window: timedelta = EMAIL_TOUCH_WINDOW,
    sms_window: timedelta = SMS_TOUCH_WINDOW,
    country: str = "US",
) -> None:
    """Bring the order lines of [lo, hi] and the facts of every local date that events in
    [lo, hi] can change up to date.

    This is one of the sync's after-events hooks; it runs in the caller's transaction. The
    windows are the last-touch attribution windows (docs/analytics.md). Raises
    InvalidParameterError for an unknown zone or country.
    """
    z = zone(timezone)
    # The customer and product facts at the end read the order lines: those go first.
    await refresh_order_lines(conn, lo, hi, timezone)
    ids = await metric_ids(conn)
    reach = hi + max(email_window, sms_window)
    first = lo.astimezone(z).date()
    last = reach.astimezone(z).date()
    dates = {first + timedelta(days=i) for i in range((last - first).days + 1)}
    cur = await conn.execute(q.EVENTS_AFTER, {"after": reach})
    later = await cur.fetchone()
    if later is not None and later["later"]:
        dates |= await _dates_of(
            conn,
            q.LATER_FIRST_TOUCH_DATES,
            {"tz": timezone, "from": lo, "to": hi, "engagement": ids.engagement},
        )
    written = await refresh_facts_for_dates(
        conn, dates, timezone, email_window=email_window, sms_window=sms_window, ids=ids,
        lines=(lo, hi),
    )  # fmt: skip
    await refresh_dim_time(conn, min(dates), max(dates), country=country)
    logger.debug(
        "refreshed facts of %d dates (%s .. %s): %d rows",
        len(dates),
        min(dates),
        max(dates),
        written,
    )


async def refresh_funnel(
    conn: Conn,
    lo: datetime,
    hi: datetime,
    timezone: str,
    *,
    email_window: timedelta = EMAIL_TOUCH_WINDOW,
    sms_window: timedelta = SMS_TOUCH_WINDOW,
) -> None:
    """Bring the funnel's profile-days that events in [lo, hi] can change up to date: its own
    reach (views up to two funnel windows before lo, touches before views up to the touch
    window after hi). An after-events hook, in the caller's transaction; it reads only events
    and `fact_funnel_days`. Raises InvalidParameterError for an unknown zone."""
    await update_funnel_facts(
        conn, lo, hi, timezone, email_window=email_window, sms_window=sms_window
    )


async def rebuild_facts(
    conn: Conn,
    timezone: str,
    *,
    email_window: timedelta = EMAIL_TOUCH_WINDOW,
    sms_window: timedelta = SMS_TOUCH_WINDOW,
    country: str = "US",
    progress: Callable[[date, date], None] | None = None,
) -> dict[str, int]:
    """Recompute every fact and `dim_time` from scratch; return the row count of each table.

    Dates are done oldest first in chunks of a month (`progress(done_through, last)` after
    each), so every refund finds its order already attributed. Raises InvalidParameterError
    for an unknown zone or country.
    """
    z = zone(timezone)
    for table in FACT_TABLES:
        await conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(table)))
    cur = await conn.execute(q.EVENT_SPAN)
    span = await cur.fetchone()
    if span is not None and span["first"] is not None:
        ids = await metric_ids(conn)
        first: date = span["first"].astimezone(z).date()
        last: date = span["last"].astimezone(z).date()
        start = first
        while start <= last:
            end = min(last, start + timedelta(days=REBUILD_CHUNK_DAYS - 1))
            chunk = [start + timedelta(days=i) for i in range((end - start).days + 1)]
            await refresh_facts_for_dates(
                conn,
                chunk,
                timezone,
                email_window=email_window,
                sms_window=sms_window,
                ids=ids,
                predecessors=False,
            )
            if progress is not None:
                progress(end, last)
            start = end + timedelta(days=1)
        await refresh_dim_time(conn, first, last, country=country)
    await rebuild_customer_facts(conn)
    await rebuild_funnel_facts(conn, timezone, email_window=email_window, sms_window=sms_window)
    counts: dict[str, int] = {}
    for table in (*FACT_TABLES, *CUSTOMER_FACT_TABLES, FUNNEL_FACT_TABLE, "dim_time"):
        cur = await conn.execute(
            sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(table))
        )
        row = await cur.fetchone()
        counts[table] = int(row["n"]) if row else 0
    return counts
