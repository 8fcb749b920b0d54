"""The months a run knows klaviyo_events has partitions for (plain PostgreSQL's monthly ones)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from klaviyo_analytics.sync.events import KnownMonths

PLUS_TWO = timezone(timedelta(hours=2))


def test_months_ensured_are_known_and_others_are_not() -> None:
    known = KnownMonths(monthly=True)
    assert not known.covers(datetime(2026, 3, 5, tzinfo=UTC), datetime(2026, 3, 6, tzinfo=UTC))
    known.add(datetime(2026, 3, 5, tzinfo=UTC), datetime(2026, 4, 2, tzinfo=UTC))
    assert known.covers(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 30, 23, tzinfo=UTC))
    assert not known.covers(datetime(2026, 4, 30, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC))
    assert not known.covers(datetime(2026, 2, 28, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC))


def test_months_are_utc_months_whatever_the_zone_of_the_timestamps() -> None:
    known = KnownMonths(monthly=True)
    # 1 April 01:00 at +02:00 is still 31 March in UTC, where the partition bounds lie.
    early_april_here = datetime(2026, 4, 1, 1, tzinfo=PLUS_TWO)
    known.add(early_april_here, early_april_here)
    assert known.covers(datetime(2026, 3, 31, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC))
    assert not known.covers(datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))


def test_a_range_over_new_year_spans_both_years_months() -> None:
    known = KnownMonths(monthly=True)
    known.add(datetime(2025, 11, 20, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))
    assert known.covers(datetime(2025, 12, 31, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
    assert not known.covers(datetime(2025, 10, 31, tzinfo=UTC), datetime(2025, 11, 1, tzinfo=UTC))


def test_without_monthly_partitions_nothing_is_ever_known() -> None:
    known = KnownMonths()  # TimescaleDB: chunks, not months
    known.add(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC))
    assert not known.covers(datetime(2026, 3, 5, tzinfo=UTC), datetime(2026, 3, 6, tzinfo=UTC))
