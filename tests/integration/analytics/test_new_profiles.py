"""New profiles in the overview: the per-day counts the triggers keep, and the range count
read from them, equal a count of the profiles themselves after any write, in any zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from klaviyo_analytics.analytics.kpis import overview
from klaviyo_analytics.analytics.periods import DateRange
from klaviyo_analytics.db.pool import Conn, Database
from klaviyo_analytics.db.repos.profiles import Profile, ProfileRepository

COUNTED = (
    "SELECT (created AT TIME ZONE 'UTC')::date AS d, count(*) AS n FROM klaviyo_profiles"
    " WHERE NOT is_stub AND created IS NOT NULL GROUP BY 1 ORDER BY 1"
)
KEPT = (
    "SELECT utc_date AS d, profiles AS n FROM fact_profiles_created WHERE profiles <> 0 ORDER BY 1"
)


def assert_counts_agree(conninfo: str) -> list[tuple[date, int]]:
    with psycopg.connect(conninfo) as conn:
        counted = conn.execute(COUNTED).fetchall()
        assert conn.execute(KEPT).fetchall() == counted
    return counted


async def test_profiles_created_per_day_follow_every_write_to_profiles(
    database: Database, db_conninfo: str
) -> None:
    repo = ProfileRepository()
    t0 = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    profiles = [Profile(id=f"p{i}", created=t0 + timedelta(hours=7 * i)) for i in range(40)]

    async def upsert(conn: Conn) -> None:
        await repo.upsert_many(conn, profiles)

    await database.run(upsert)
    counted = assert_counts_agree(db_conninfo)
    assert sum(n for _, n in counted) == 40

    # Stubs are not profiles yet; the sync of the profile makes it one.
    async def stubs(conn: Conn) -> None:
        await repo.ensure_stubs(conn, ["s1", "s2", "p3"])

    await database.run(stubs)
    assert assert_counts_agree(db_conninfo) == counted
    profiles = [*profiles[:5], Profile(id="s1", created=t0), Profile(id="p1", created=t0)]
    await database.run(upsert)  # one new, one moved to another day, three unchanged
    counted = assert_counts_agree(db_conninfo)
    assert sum(n for _, n in counted) == 41

    with psycopg.connect(db_conninfo) as conn:
        conn.execute("UPDATE klaviyo_profiles SET created = created - interval '3 days'")
        conn.execute("UPDATE klaviyo_profiles SET created = NULL WHERE id = 'p2'")
        conn.execute("UPDATE klaviyo_profiles SET is_stub = true WHERE id = 'p4'")
    counted = assert_counts_agree(db_conninfo)
    assert sum(n for _, n in counted) == 39
    with psycopg.connect(db_conninfo) as conn:
        conn.execute("DELETE FROM klaviyo_profiles WHERE id IN ('p5', 'p6', 's2')")
    assert sum(n for _, n in assert_counts_agree(db_conninfo)) == 37
    with psycopg.connect(db_conninfo) as conn:
        conn.execute("TRUNCATE klaviyo_profiles CASCADE")
    assert assert_counts_agree(db_conninfo) == []


@pytest.mark.parametrize(
    ("zone", "start", "days"),
    [
        ("Asia/Kolkata", date(2026, 3, 2), 1),  # UTC+5:30: store days end mid-way through hours
        ("America/New_York", date(2026, 3, 7), 2),  # across the 23-hour day of 8 March
        ("America/New_York", date(2026, 10, 31), 3),  # across the 25-hour day of 1 November
        ("Pacific/Chatham", date(2026, 3, 1), 30),  # UTC+13:45 / +12:45
        ("UTC", date(2026, 3, 3), 7),
    ],
)
async def test_new_profiles_of_a_range_count_its_profiles_exactly_in_any_zone(
    database: Database, db_conninfo: str, zone: str, start: date, days: int
) -> None:
    # A profile every 41 minutes for 313 days, so every range edge falls between two of them.
    first = datetime(2026, 1, 1, tzinfo=UTC)
    profiles = [
        Profile(id=f"p{i}", created=first + timedelta(minutes=41 * i)) for i in range(11_000)
    ]
    rng = DateRange(start, start + timedelta(days=days - 1))

    async def work(conn: Conn) -> tuple[int, int]:
        await ProfileRepository().upsert_many(conn, profiles)
        got = await overview(conn, rng, zone)
        assert got.subscribers_source == "profiles"
        return int(got.subscribers.current), int(got.subscribers.previous)

    got = await database.run(work)

    def expected(r: DateRange) -> int:
        lo, hi = r.bounds(zone)
        return sum(1 for p in profiles if p.created is not None and lo <= p.created < hi)

    assert got == (expected(rng), expected(rng.previous()))
    assert got[0] > 0
