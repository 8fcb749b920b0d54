"""The funnel read from `fact_funnel_days` (migration 0020) equals the funnel computed from the
raw events, after a sync, a full re-sync, late checkouts, orders and touches for earlier views,
deleted events, on ranges at the data's boundaries, and after `analytics rebuild`.

The independent answer is the statement the endpoint ran on raw events before the fact existed
(views of the range; checkouts after one of them within 7 days; orders after such a checkout
within 7 days; the last touch before the profile's first view of the range).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from klaviyo_analytics import wiring
from klaviyo_analytics.analytics import products
from klaviyo_analytics.analytics.facts import EMAIL_TOUCH_WINDOW, SMS_TOUCH_WINDOW, rebuild_facts
from klaviyo_analytics.analytics.periods import DateRange
from klaviyo_analytics.db.pool import Conn, Database
from klaviyo_analytics.db.repos.events import Event, EventRepository
from klaviyo_analytics.sandbox.server import SandboxServer
from tests.fixtures.sync import sync_service
from tests.integration.analytics.truth import table

TZ = "America/New_York"
WEEK = timedelta(days=7)

RAW_FUNNEL = (
    "WITH m AS ("
    " SELECT array_agg(id) FILTER (WHERE name = 'Viewed Product') AS viewed,"
    "  array_agg(id) FILTER (WHERE name = 'Started Checkout') AS started,"
    "  array_agg(id) FILTER (WHERE name = 'Placed Order') AS placed,"
    "  array_agg(id) FILTER (WHERE name IN ('Opened Email', 'Clicked Email')) AS email_touch,"
    "  array_agg(id) FILTER (WHERE name = 'Clicked SMS') AS sms_touch"
    " FROM klaviyo_metrics"
    "), views AS ("
    ' SELECT e.profile_id, e."timestamp" AS ts FROM klaviyo_events e, m'
    " WHERE e.metric_id = ANY(m.viewed) AND e.profile_id IS NOT NULL"
    '  AND e."timestamp" >= %(lo)s AND e."timestamp" < %(hi)s'
    "), viewers AS ("
    " SELECT profile_id, min(ts) AS first_view FROM views GROUP BY profile_id"
    "), checkouts AS ("
    ' SELECT e.profile_id, e."timestamp" AS ts FROM klaviyo_events e, m'
    " WHERE e.metric_id = ANY(m.started)"
    "  AND e.profile_id IN (SELECT profile_id FROM viewers)"
    "  AND EXISTS (SELECT 1 FROM views v WHERE v.profile_id = e.profile_id"
    '   AND v.ts <= e."timestamp" AND v.ts >= e."timestamp" - %(window)s)'
    "), buyers AS ("
    " SELECT DISTINCT e.profile_id FROM klaviyo_events e, m"
    " WHERE e.metric_id = ANY(m.placed)"
    "  AND e.profile_id IN (SELECT profile_id FROM checkouts)"
    "  AND EXISTS (SELECT 1 FROM checkouts c WHERE c.profile_id = e.profile_id"
    '   AND c.ts <= e."timestamp" AND c.ts >= e."timestamp" - %(window)s)'
    ")"
    " SELECT coalesce(t.channel, 'unattributed') AS channel, count(*) AS viewed,"
    "  count(*) FILTER (WHERE v.profile_id IN (SELECT profile_id FROM checkouts)) AS started,"
    "  count(*) FILTER (WHERE v.profile_id IN (SELECT profile_id FROM buyers)) AS placed"
    " FROM viewers v"
    " LEFT JOIN LATERAL ("
    "  SELECT CASE WHEN t.metric_id = ANY(m.sms_touch) THEN 'sms_' ELSE 'email_' END"
    "   || t.attributed_source_type AS channel"
    "  FROM klaviyo_events t, m"
    "  WHERE t.profile_id = v.profile_id AND t.attributed_source_type IS NOT NULL"
    '   AND t.attributed_message_id IS NOT NULL AND t."timestamp" < v.first_view'
    '   AND ((t.metric_id = ANY(m.email_touch) AND t."timestamp" >= v.first_view - %(email)s)'
    '    OR (t.metric_id = ANY(m.sms_touch) AND t."timestamp" >= v.first_view - %(sms)s))'
    '  ORDER BY t."timestamp" DESC, t.id DESC LIMIT 1) t ON true'
    " GROUP BY 1"
)


def raw_funnel(conninfo: str, rng: DateRange) -> dict[str, tuple[int, int, int]]:
    lo, hi = rng.bounds(TZ)
    rows = table(conninfo, RAW_FUNNEL, lo=lo, hi=hi, window=WEEK, email=EMAIL_TOUCH_WINDOW,
                 sms=SMS_TOUCH_WINDOW)  # fmt: skip
    return {r["channel"]: (r["viewed"], r["started"], r["placed"]) for r in rows}


async def _run(conninfo: str, work: Any) -> Any:
    async with Database(conninfo, min_size=1, max_size=2) as db:
        return await db.run(work)


async def fact_funnel(conninfo: str, rng: DateRange) -> dict[str, tuple[int, int, int]]:
    async def read(conn: Conn) -> products.Funnel:
        return await products.funnel(conn, rng)

    found = await _run(conninfo, read)
    channels = {
        ch: (steps[0].profiles, steps[1].profiles, steps[2].profiles)
        for ch, steps in found.channels.items()
    }
    assert [s.profiles for s in found.steps] == [
        sum(c[k] for c in channels.values()) for k in range(3)
    ]
    return channels


def view_span(conninfo: str) -> tuple[date, date]:
    row = table(conninfo, "SELECT min(date) AS lo, max(date) AS hi FROM fact_funnel_days")[0]
    return row["lo"], row["hi"]


def ranges(conninfo: str, *around: date) -> list[DateRange]:
    """The whole span, its first and last dates alone, the last 14 and 30 days, and a week
    either side of each date in `around` (and that date alone)."""
    lo, hi = view_span(conninfo)
    out = [DateRange(lo, hi), DateRange(lo, lo), DateRange(hi, hi),
           DateRange(hi - timedelta(days=13), hi), DateRange(hi - timedelta(days=29), hi)]  # fmt: skip
    for d in around:
        out += [DateRange(d, d), DateRange(d - WEEK, d), DateRange(d, d + WEEK)]
    return out


async def assert_exact(conninfo: str, *around: date) -> dict[str, tuple[int, int, int]]:
    """Assert the fact-based funnel equals the raw one on every range; return the whole span's."""
    whole: dict[str, tuple[int, int, int]] = {}
    for rng in ranges(conninfo, *around):
        got = await fact_funnel(conninfo, rng)
        assert got == raw_funnel(conninfo, rng), rng
        whole = whole or got
    return whole


def snapshot(conninfo: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(conninfo) as conn:
        return conn.execute("SELECT t::text FROM fact_funnel_days t ORDER BY 1").fetchall()


def metric(conninfo: str, name: str) -> str:
    return str(
        table(conninfo, "SELECT id FROM klaviyo_metrics WHERE name = %(n)s", n=name)[0]["id"]
    )


async def _hooks(conninfo: str, *events: Event) -> None:
    """Store the events (those with a metric) and run the sync's hooks for each one's instant."""

    async def work(conn: Conn) -> None:
        for event in events:
            if event.metric_id:
                await EventRepository().upsert_many(conn, [event])
            for hook in wiring.AFTER_EVENTS:
                await hook(conn, event.timestamp, event.timestamp, TZ)

    await _run(conninfo, work)


async def test_funnel_after_a_sync_equals_the_raw_events_on_every_range(
    synced_conninfo: str,
) -> None:
    whole = await assert_exact(synced_conninfo)
    # Not trivially true: every step is reached, through several channels.
    assert sum(c[2] for c in whole.values()) > 0, whole
    assert len(whole) > 2 and "unattributed" in whole, whole


async def test_funnel_facts_stay_exact_and_unchanged_after_a_full_resync(
    synced_conninfo: str, sandbox: SandboxServer
) -> None:
    before = snapshot(synced_conninfo)
    async with sync_service(synced_conninfo, sandbox) as service:
        await service.sync_all(full=True)
    assert snapshot(synced_conninfo) == before
    await assert_exact(synced_conninfo)


async def test_late_checkout_order_and_touch_change_earlier_views(synced_conninfo: str) -> None:
    # A viewer with no checkout after its view: a checkout 6 days after its last view of the
    # day and an order 6 days after that arrive late, each synced on its own (the order's
    # range is 12 days after the view's date). Another unattributed viewer gets a late click
    # 2 hours before its first view, synced alone.
    viewer = table(
        synced_conninfo,
        "SELECT profile_id, date, first_view FROM fact_funnel_days WHERE NOT started"
        " ORDER BY date, profile_id LIMIT 1",
    )[0]
    quiet = table(
        synced_conninfo,
        "SELECT profile_id, date, first_view FROM fact_funnel_days"
        " WHERE channel = 'unattributed' AND profile_id <> %(p)s ORDER BY date, profile_id LIMIT 1",
        p=viewer["profile_id"],
    )[0]
    checkout = Event(id="late-checkout", timestamp=viewer["first_view"] + timedelta(days=6),
                     metric_id=metric(synced_conninfo, "Started Checkout"),
                     profile_id=viewer["profile_id"], properties={})  # fmt: skip
    order = Event(id="late-order", timestamp=checkout.timestamp + timedelta(days=6),
                  metric_id=metric(synced_conninfo, "Placed Order"),
                  profile_id=viewer["profile_id"], properties={"$value": 5})  # fmt: skip
    click = Event(id="late-click", timestamp=quiet["first_view"] - timedelta(hours=2),
                  metric_id=metric(synced_conninfo, "Clicked Email"),
                  profile_id=quiet["profile_id"], attributed_source_type="flow",
                  attributed_source_id="late-flow", attributed_message_id="late-message",
                  properties={})  # fmt: skip
    await _hooks(synced_conninfo, checkout, order)
    # (The click goes alone and last: its own date is recomputed whole, maybe the viewer's.)
    assert table(
        synced_conninfo,
        "SELECT started, placed FROM fact_funnel_days WHERE profile_id = %(p)s AND date = %(d)s",
        p=viewer["profile_id"],
        d=viewer["date"],
    ) == [{"started": True, "placed": True}]
    await _hooks(synced_conninfo, click)
    assert table(
        synced_conninfo,
        "SELECT channel, touch_ts FROM fact_funnel_days WHERE profile_id = %(p)s AND date = %(d)s",
        p=quiet["profile_id"],
        d=quiet["date"],
    ) == [{"channel": "email_flow", "touch_ts": click.timestamp}]
    await assert_exact(synced_conninfo, viewer["date"], quiet["date"])


async def test_deleted_checkouts_orders_and_touches_leave_no_trace(synced_conninfo: str) -> None:
    # The witnesses of a placed row (its checkout and order) and of an attributed row (its
    # touch) are deleted, on dates before and after the rows' own, and synced alone.
    placed = table(
        synced_conninfo,
        "SELECT * FROM fact_funnel_days WHERE placed AND order_ts::date > date + 1"
        " ORDER BY date, profile_id LIMIT 1",
    )[0]
    touched = table(
        synced_conninfo,
        "SELECT * FROM fact_funnel_days WHERE channel <> 'unattributed'"
        " AND touch_ts < first_view - interval '1 day' ORDER BY date, profile_id LIMIT 1",
    )[0]
    gone = []
    with psycopg.connect(synced_conninfo) as conn:
        for profile, ts in (
            (placed["profile_id"], placed["order_ts"]),
            (placed["profile_id"], placed["order_checkout_ts"]),
            (touched["profile_id"], touched["touch_ts"]),
        ):
            row = conn.execute(
                'DELETE FROM klaviyo_events WHERE profile_id = %s AND "timestamp" = %s'
                " RETURNING id",
                [profile, ts],
            ).fetchall()
            assert row
            gone.append(ts)
    await _hooks(synced_conninfo, *(Event(id="gone", timestamp=ts, metric_id="") for ts in gone))
    await assert_exact(synced_conninfo, placed["date"], touched["date"])
    after = table(
        synced_conninfo,
        "SELECT order_ts, touch_ts FROM fact_funnel_days WHERE (profile_id, date) IN"
        " ((%(a)s, %(ad)s), (%(b)s, %(bd)s))",
        a=placed["profile_id"], ad=placed["date"], b=touched["profile_id"], bd=touched["date"],
    )  # fmt: skip
    assert all(r["order_ts"] not in gone and r["touch_ts"] not in gone for r in after)


async def test_rebuild_gives_the_same_funnel_facts_as_the_sync_hooks(
    synced_conninfo: str,
) -> None:
    before = snapshot(synced_conninfo)
    with psycopg.connect(synced_conninfo) as conn:
        conn.execute("UPDATE fact_funnel_days SET started = NOT started, channel = 'x'")
        conn.execute("DELETE FROM fact_funnel_days WHERE date > (SELECT min(date) + 3"
                     " FROM fact_funnel_days)")  # fmt: skip

    async def work(conn: Conn) -> dict[str, int]:
        return await rebuild_facts(conn, TZ)

    counts = await _run(synced_conninfo, work)
    assert counts["fact_funnel_days"] == len(before) > 0
    assert snapshot(synced_conninfo) == before
    await assert_exact(synced_conninfo)


async def test_the_first_refresh_after_the_upgrade_builds_the_whole_funnel_fact(
    synced_conninfo: str,
) -> None:
    """A database that held events when migration 0020 ran has an empty, unbuilt funnel fact;
    the next sync's refresh of any one hour builds all of it."""
    before = snapshot(synced_conninfo)
    first, last = view_span(synced_conninfo)
    with psycopg.connect(synced_conninfo) as conn:
        conn.execute("TRUNCATE fact_funnel_days")
        conn.execute("DELETE FROM fact_builds WHERE fact = 'fact_funnel_days'")
    instant = datetime.combine(last, datetime.min.time(), tzinfo=UTC)

    async def refresh(conn: Conn) -> None:
        for hook in wiring.AFTER_EVENTS:
            await hook(conn, instant, instant + timedelta(hours=1), TZ)

    await _run(synced_conninfo, refresh)
    assert len(before) > 0 and snapshot(synced_conninfo) == before
    assert table(synced_conninfo, "SELECT fact FROM fact_builds") == [{"fact": "fact_funnel_days"}]
    # Built once: the next refresh updates in place (an unchanged hour changes nothing).
    await _run(synced_conninfo, refresh)
    assert snapshot(synced_conninfo) == before
    await assert_exact(synced_conninfo, first)
