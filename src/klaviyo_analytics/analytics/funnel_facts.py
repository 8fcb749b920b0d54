"""The shopping funnel's stored fact, `fact_funnel_days`, kept exact from raw events.

One row per (profile, local date with a Viewed Product): the day's first view; `started`, a
Started Checkout at most FUNNEL_WINDOW after one of the day's views; `placed`, a Placed Order
at most FUNNEL_WINDOW after such a checkout; and the channel of the last message touch before
the day's first view. A day's views lie within 25 hours of each other, so "after one of the
day's views" is "in [first view, last view + window]". A range's funnel groups its dates' rows
by profile: existence over a union of days is the OR of the days, and the first view of the
range is its earliest row's. Each row links to the same profile's other rows (the previous
row's date; the first date from this row on whose row started, and placed), so the read
(`products.funnel`) counts the earliest row of each profile in the range without grouping by
profile; the links of every profile whose rows were rewritten are recomputed after each write.

What events in [lo, hi] can change, and what `update_funnel_facts` therefore recomputes:

* the rows on the local dates of [lo, hi]: every profile's (a view there, or one deleted);
* the rows of the two FUNNEL_WINDOWs before lo (a checkout or order in the range follows a view
  up to that long before it) and of the longest touch window after hi (a touch in the range
  precedes views up to that long after it), for the profiles with a checkout, order or touch
  in [lo, hi], and the rows whose witness lies in [lo, hi]. Each row keeps the events that
  make its values (the checkout, the order and its checkout, the touch), so a deleted or
  moved event that could change a row is one of its witnesses; any other event's loss leaves
  the row as it was.

Each statement covers at most CHUNK_DAYS dates; the rows' checkouts, orders and touches are
index probes keyed by one profile and a few days. `rebuild_funnel_facts` recomputes it all.
Definitions and costs: docs/analytics.md.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, LiteralString

from klaviyo_analytics.analytics import attribution as q
from klaviyo_analytics.analytics.metric_names import MetricIds, metric_ids
from klaviyo_analytics.analytics.periods import zone
from klaviyo_analytics.db.pool import Conn

__all__ = [
    "FUNNEL_FACT_TABLE",
    "FUNNEL_WINDOW",
    "rebuild_funnel_facts",
    "update_funnel_facts",
]

logger = logging.getLogger(__name__)

FUNNEL_FACT_TABLE: LiteralString = "fact_funnel_days"
FUNNEL_WINDOW = timedelta(days=7)
CHUNK_DAYS = 31

_BY_PROFILE: LiteralString = " AND e.profile_id = ANY(%(profiles)s::text[])"


def _insert(restrict: LiteralString) -> LiteralString:
    # Views of the dates (of `profiles` only, with `restrict`) per profile and day, then one
    # probe each for the earliest checkout of [first view, last view + window], the earliest
    # order at most a window after one of those checkouts (with the latest such checkout),
    # and the last touch before the first view, as the attribution windows allow.
    return (
        "INSERT INTO fact_funnel_days (profile_id, date, first_view, started, placed, channel,"
        " checkout_ts, order_checkout_ts, order_ts, touch_ts)"
        " SELECT d.profile_id, d.date, d.first_view, ck.ts IS NOT NULL, po.order_ts IS NOT NULL,"
        "  coalesce(t.channel, 'unattributed'), ck.ts, po.checkout_ts, po.order_ts, t.ts"
        " FROM ("
        "  SELECT e.profile_id, " + q.LOCAL_DATE + ' AS date, min(e."timestamp") AS first_view,'
        '   max(e."timestamp") AS last_view'
        "  FROM klaviyo_events e"
        "  WHERE e.metric_id = ANY(%(viewed)s::text[]) AND e.profile_id IS NOT NULL"
        "   AND " + q.ON_DATES + restrict +
        "  GROUP BY 1, 2) d"
        " LEFT JOIN LATERAL ("
        '  SELECT min(c."timestamp") AS ts FROM klaviyo_events c'
        "  WHERE c.profile_id = d.profile_id AND c.metric_id = ANY(%(started)s::text[])"
        '   AND c."timestamp" >= d.first_view AND c."timestamp" <= d.last_view + %(window)s'
        " ) ck ON true"
        " LEFT JOIN LATERAL ("
        '  SELECT o."timestamp" AS order_ts, oc.ts AS checkout_ts FROM klaviyo_events o'
        "  CROSS JOIN LATERAL ("
        '   SELECT max(c."timestamp") AS ts FROM klaviyo_events c'
        "   WHERE c.profile_id = o.profile_id AND c.metric_id = ANY(%(started)s::text[])"
        '    AND c."timestamp" >= greatest(d.first_view, o."timestamp" - %(window)s)'
        '    AND c."timestamp" <= least(o."timestamp", d.last_view + %(window)s)) oc'
        "  WHERE ck.ts IS NOT NULL AND o.profile_id = d.profile_id"
        "   AND o.metric_id = ANY(%(placed)s::text[])"
        '   AND o."timestamp" >= ck.ts AND o."timestamp" <= d.last_view + 2 * %(window)s'
        "   AND oc.ts IS NOT NULL"
        '  ORDER BY o."timestamp" LIMIT 1'
        " ) po ON true"
        " LEFT JOIN LATERAL ("
        '  SELECT t."timestamp" AS ts,'
        "   CASE WHEN t.metric_id = ANY(%(sms_touch)s::text[]) THEN 'sms_' ELSE 'email_' END"
        "    || t.attributed_source_type AS channel"
        "  FROM klaviyo_events t"
        "  WHERE t.profile_id = d.profile_id AND t.attributed_source_type IS NOT NULL"
        '   AND t.attributed_message_id IS NOT NULL AND t."timestamp" < d.first_view'
        '   AND t."timestamp" >= d.first_view - greatest(%(email_window)s, %(sms_window)s)'
        "   AND ((t.metric_id = ANY(%(email_touch)s::text[])"
        '         AND t."timestamp" >= d.first_view - %(email_window)s)'
        "    OR (t.metric_id = ANY(%(sms_touch)s::text[])"
        '         AND t."timestamp" >= d.first_view - %(sms_window)s))'
        '  ORDER BY t."timestamp" DESC, t.id DESC LIMIT 1'
        " ) t ON true"
    )  # fmt: skip


_INSERT_ALL = _insert("")
_RETURNING: LiteralString = " RETURNING profile_id"
_INSERT_DATES = _INSERT_ALL + _RETURNING
_INSERT_PROFILES = _insert(_BY_PROFILE) + _RETURNING
_DELETE_ALL: LiteralString = "DELETE FROM fact_funnel_days WHERE " + q.FACT_DATES
_DELETE_PROFILES: LiteralString = (
    _DELETE_ALL + " AND profile_id = ANY(%(profiles)s::text[])" + _RETURNING
)
_DELETE_DATES: LiteralString = _DELETE_ALL + _RETURNING


def _link(restrict: LiteralString) -> LiteralString:
    # Each row's links to the same profile's other rows: the previous row's date, and the
    # first date from this row on whose row started (placed). Only changed rows are written.
    return (
        "UPDATE fact_funnel_days f SET prev_date = w.prev_date,"
        " started_from = w.started_from, placed_from = w.placed_from"
        " FROM (SELECT profile_id, date, lag(date) OVER (PARTITION BY profile_id ORDER BY date)"
        "   AS prev_date,"
        "  min(date) FILTER (WHERE started) OVER ahead AS started_from,"
        "  min(date) FILTER (WHERE placed) OVER ahead AS placed_from"
        "  FROM fact_funnel_days" + restrict +
        "  WINDOW ahead AS (PARTITION BY profile_id ORDER BY date"
        "   ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING)) w"
        " WHERE f.profile_id = w.profile_id AND f.date = w.date"
        "  AND (f.prev_date, f.started_from, f.placed_from)"
        "   IS DISTINCT FROM (w.prev_date, w.started_from, w.placed_from)"
    )  # fmt: skip


_LINK_ALL = _link("")
_LINK_PROFILES = _link(" WHERE profile_id = ANY(%(profiles)s::text[])")
# The profiles whose rows on dates before or after the range its events can change: those with
# a checkout, order or touch in it, and those of rows whose witness is in it.
_TOUCHED: LiteralString = (
    "SELECT DISTINCT profile_id FROM klaviyo_events"
    ' WHERE "timestamp" >= %(from)s AND "timestamp" <= %(to)s AND profile_id IS NOT NULL'
    "  AND metric_id = ANY(%(moves)s::text[])"
    " UNION SELECT profile_id FROM fact_funnel_days"
    " WHERE date >= %(edge_first)s AND date <= %(edge_last)s"
    "  AND (checkout_ts BETWEEN %(from)s AND %(to)s OR order_ts BETWEEN %(from)s AND %(to)s"
    "   OR order_checkout_ts BETWEEN %(from)s AND %(to)s OR touch_ts BETWEEN %(from)s AND %(to)s)"
)


def _span(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _chunks(first: date, last: date) -> list[list[date]]:
    days = _span(first, last)
    return [days[i : i + CHUNK_DAYS] for i in range(0, len(days), CHUNK_DAYS)]


def _params(
    ids: MetricIds, dates: list[date], tz: str, email_window: timedelta, sms_window: timedelta
) -> dict[str, Any]:
    z = zone(tz)
    # A day more on each side: harmless for the index range, and safe across odd DST rules.
    lo = datetime.combine(dates[0] - timedelta(days=1), time(0), tzinfo=z)
    hi = datetime.combine(dates[-1] + timedelta(days=2), time(0), tzinfo=z)
    return {
        "tz": tz,
        "dates": dates,
        "first": dates[0],
        "last": dates[-1],
        "lo": lo.astimezone(UTC),
        "hi": hi.astimezone(UTC),
        "viewed": ids.viewed_product,
        "started": ids.started_checkout,
        "placed": ids.placed_order,
        "email_touch": ids.opened_email + ids.clicked_email,
        "sms_touch": ids.clicked_sms,
        "window": FUNNEL_WINDOW,
        "email_window": email_window,
        "sms_window": sms_window,
    }


async def _write(conn: Conn, params: dict[str, Any], *, restricted: bool) -> tuple[int, set[str]]:
    """Rewrite the rows of the chunk's dates (of `profiles`, when restricted); return the rows
    written and the profiles whose rows were deleted or written (their links need redoing)."""
    cur = await conn.execute(_DELETE_PROFILES if restricted else _DELETE_DATES, params)
    touched = {row["profile_id"] for row in await cur.fetchall()}
    cur = await conn.execute(_INSERT_PROFILES if restricted else _INSERT_DATES, params)
    written = [row["profile_id"] for row in await cur.fetchall()]
    return len(written), touched | set(written)


_CLAIM_BUILD: LiteralString = (
    "INSERT INTO fact_builds (fact) VALUES (%(fact)s) ON CONFLICT (fact) DO NOTHING"
)
_MARK_BUILT: LiteralString = (
    "INSERT INTO fact_builds (fact) VALUES (%(fact)s)"
    " ON CONFLICT (fact) DO UPDATE SET built_at = now()"
)


async def _claim_first_build(conn: Conn) -> bool:
    """Record the funnel fact as built; True when it was not (this caller must build it).

    A concurrent refresh waits on the row until this transaction ends, then sees it built."""
    cur = await conn.execute(_CLAIM_BUILD, {"fact": FUNNEL_FACT_TABLE})
    return cur.rowcount == 1


async def update_funnel_facts(
    conn: Conn,
    lo: datetime,
    hi: datetime,
    timezone: str,
    *,
    email_window: timedelta,
    sms_window: timedelta,
    ids: MetricIds | None = None,
) -> int:
    """Recompute every `fact_funnel_days` row that events in [lo, hi] can change; return the
    rows written. The first call on a database migrated while it held events builds the
    whole table instead (`fact_builds`). Raises InvalidParameterError for an unknown zone."""
    z = zone(timezone)
    if await _claim_first_build(conn):
        logger.info("building %s from all stored events (first refresh since it was added)",
                    FUNNEL_FACT_TABLE)  # fmt: skip
        return await rebuild_funnel_facts(
            conn, timezone, email_window=email_window, sms_window=sms_window
        )
    ids = ids or await metric_ids(conn)
    first = lo.astimezone(z).date()
    last = hi.astimezone(z).date()
    before = (
        (lo - 2 * FUNNEL_WINDOW).astimezone(z).date(),
        first - timedelta(days=1),
    )
    after = (last + timedelta(days=1), (hi + max(email_window, sms_window)).astimezone(z).date())
    written = 0
    relink: set[str] = set()
    for chunk in _chunks(first, last):
        params = _params(ids, chunk, timezone, email_window, sms_window)
        rows, touched = await _write(conn, params, restricted=False)
        written += rows
        relink |= touched
    cur = await conn.execute(
        _TOUCHED,
        {
            "from": lo,
            "to": hi,
            "moves": ids.started_checkout + ids.placed_order + ids.opened_email
            + ids.clicked_email + ids.clicked_sms,
            "edge_first": before[0],
            "edge_last": after[1],
        },
    )  # fmt: skip
    profiles = sorted({row["profile_id"] for row in await cur.fetchall()})
    if profiles:
        for edge_first, edge_last in (before, after):
            for chunk in _chunks(edge_first, edge_last):
                params = _params(ids, chunk, timezone, email_window, sms_window)
                params["profiles"] = profiles
                rows, touched = await _write(conn, params, restricted=True)
                written += rows
                relink |= touched
    if relink:
        await conn.execute(_LINK_PROFILES, {"profiles": sorted(relink)})
    logger.debug(
        "funnel facts of %s .. %s and of %d profiles around it: %d rows",
        first,
        last,
        len(profiles),
        written,
    )
    return written


async def rebuild_funnel_facts(
    conn: Conn, timezone: str, *, email_window: timedelta, sms_window: timedelta
) -> int:
    """Recompute all of `fact_funnel_days` from raw events, a month of dates per statement;
    return its rows. Raises InvalidParameterError for an unknown zone."""
    z = zone(timezone)
    await conn.execute("TRUNCATE fact_funnel_days")
    await conn.execute(_MARK_BUILT, {"fact": FUNNEL_FACT_TABLE})
    cur = await conn.execute(q.EVENT_SPAN)
    span = await cur.fetchone()
    if span is None or span["first"] is None:
        return 0
    ids = await metric_ids(conn)
    written = 0
    for chunk in _chunks(span["first"].astimezone(z).date(), span["last"].astimezone(z).date()):
        params = _params(ids, chunk, timezone, email_window, sms_window)
        cur = await conn.execute(_INSERT_ALL, params)
        written += max(cur.rowcount, 0)
    await conn.execute(_LINK_ALL)
    return written
