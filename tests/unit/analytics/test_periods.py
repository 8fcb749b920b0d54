"""Date ranges: presets at month and year boundaries, validation, local days and DST bounds."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from klaviyo_analytics.analytics.errors import InvalidParameterError
from klaviyo_analytics.analytics.periods import (
    PRESETS,
    DateRange,
    InvalidRangeError,
    local_today,
    resolve_range,
)
from klaviyo_analytics.errors import KlaviyoAnalyticsError


@pytest.mark.parametrize(
    ("preset", "today", "expected"),
    [
        ("today", date(2026, 3, 1), DateRange(date(2026, 3, 1), date(2026, 3, 1))),
        ("yesterday", date(2026, 3, 1), DateRange(date(2026, 2, 28), date(2026, 2, 28))),
        ("yesterday", date(2026, 1, 1), DateRange(date(2025, 12, 31), date(2025, 12, 31))),
        ("last-7-days", date(2026, 3, 3), DateRange(date(2026, 2, 25), date(2026, 3, 3))),
        ("last-30-days", date(2026, 1, 10), DateRange(date(2025, 12, 12), date(2026, 1, 10))),
        ("last-90-days", date(2024, 3, 31), DateRange(date(2024, 1, 2), date(2024, 3, 31))),
        ("this-month", date(2026, 3, 1), DateRange(date(2026, 3, 1), date(2026, 3, 1))),
        ("this-month", date(2026, 2, 28), DateRange(date(2026, 2, 1), date(2026, 2, 28))),
        ("last-month", date(2026, 3, 31), DateRange(date(2026, 2, 1), date(2026, 2, 28))),
        ("last-month", date(2024, 3, 1), DateRange(date(2024, 2, 1), date(2024, 2, 29))),
        ("last-month", date(2026, 1, 15), DateRange(date(2025, 12, 1), date(2025, 12, 31))),
        ("this-year", date(2026, 1, 1), DateRange(date(2026, 1, 1), date(2026, 1, 1))),
        ("this-year", date(2025, 12, 31), DateRange(date(2025, 1, 1), date(2025, 12, 31))),
    ],
)
def test_presets_resolve_to_store_dates_at_month_and_year_boundaries(
    preset: str, today: date, expected: DateRange
) -> None:
    assert resolve_range(preset=preset, today=today) == expected


def test_last_n_days_presets_include_today_and_span_n_days() -> None:
    today = date(2026, 5, 17)
    for n in (7, 30, 90):
        rng = resolve_range(preset=f"last-{n}-days", today=today)
        assert rng.end == today
        assert rng.days == n


def test_every_listed_preset_resolves() -> None:
    for preset in PRESETS:
        assert resolve_range(preset=preset, today=date(2026, 7, 4)).end <= date(2026, 7, 4)


def test_presets_follow_the_stores_today_not_utcs() -> None:
    # 02:30 UTC on 1 March is still 28 February in New York: "this-month" is February.
    now = datetime(2026, 3, 1, 2, 30, tzinfo=UTC)
    today = local_today("America/New_York", now)
    assert today == date(2026, 2, 28)
    assert resolve_range(preset="this-month", today=today) == DateRange(
        date(2026, 2, 1), date(2026, 2, 28)
    )
    assert local_today("UTC", now) == date(2026, 3, 1)
    assert local_today("Asia/Tokyo", datetime(2025, 12, 31, 15, 0, tzinfo=UTC)) == date(2026, 1, 1)


def test_explicit_dates_make_a_range_and_nothing_defaults_to_last_30_days() -> None:
    rng = resolve_range(start=date(2026, 1, 5), end=date(2026, 1, 5), today=date(2026, 2, 1))
    assert rng == DateRange(date(2026, 1, 5), date(2026, 1, 5))
    assert rng.days == 1
    assert resolve_range(today=date(2026, 2, 1)) == resolve_range(
        preset="last-30-days", today=date(2026, 2, 1)
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preset": "last-week"}, "unknown preset 'last-week'; valid presets: today, yesterday"),
        ({"start": date(2026, 2, 2), "end": date(2026, 2, 1)}, "start 2026-02-02 is after end"),
        ({"start": date(2010, 1, 1), "end": date(2020, 1, 9)}, "at most 3660 days"),
        ({"preset": "today", "start": date(2026, 1, 1)}, "not both"),
        ({"preset": "today", "end": date(2026, 1, 1)}, "not both"),
        ({"start": date(2026, 1, 1)}, "end is missing"),
        ({"end": date(2026, 1, 1)}, "start is missing"),
    ],
)
def test_invalid_ranges_are_refused_with_a_message_naming_the_problem(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidRangeError, match=message) as caught:
        resolve_range(today=date(2026, 3, 1), **kwargs)  # type: ignore[arg-type]
    assert isinstance(caught.value, KlaviyoAnalyticsError)
    assert isinstance(caught.value, ValueError)


def test_the_longest_allowed_range_is_accepted() -> None:
    rng = resolve_range(start=date(2010, 1, 1), end=date(2020, 1, 8), today=date(2026, 1, 1))
    assert rng.days == 3660


def test_previous_range_has_the_same_length_and_ends_the_day_before() -> None:
    rng = DateRange(date(2026, 3, 1), date(2026, 3, 31))
    prev = rng.previous()
    assert prev == DateRange(date(2026, 1, 29), date(2026, 2, 28))
    assert prev.days == rng.days
    assert DateRange(date(2026, 1, 1), date(2026, 1, 1)).previous() == DateRange(
        date(2025, 12, 31), date(2025, 12, 31)
    )


def test_bounds_are_local_midnights_in_utc_across_dst_changes() -> None:
    # 8 March 2026: New York springs forward, the day has 23 hours.
    lo, hi = DateRange(date(2026, 3, 8), date(2026, 3, 8)).bounds("America/New_York")
    assert lo == datetime(2026, 3, 8, 5, 0, tzinfo=UTC)
    assert hi == datetime(2026, 3, 9, 4, 0, tzinfo=UTC)
    assert hi - lo == timedelta(hours=23)
    # 1 November 2026: falls back, 25 hours.
    lo, hi = DateRange(date(2026, 11, 1), date(2026, 11, 1)).bounds("America/New_York")
    assert hi - lo == timedelta(hours=25)
    lo, hi = DateRange(date(2026, 1, 1), date(2026, 1, 31)).bounds("UTC")
    assert (lo, hi) == (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))
    assert lo.tzinfo is UTC


def test_an_unknown_zone_is_refused_by_name() -> None:
    with pytest.raises(InvalidParameterError, match="Mars/Olympus"):
        DateRange(date(2026, 1, 1), date(2026, 1, 2)).bounds("Mars/Olympus")
    with pytest.raises(InvalidParameterError, match="Mars/Olympus"):
        local_today("Mars/Olympus")


def test_a_range_cannot_be_built_backwards() -> None:
    with pytest.raises(InvalidRangeError, match="after end"):
        DateRange(date(2026, 1, 2), date(2026, 1, 1))


def test_a_year_earlier_keeps_the_dates_and_moves_29_february_to_the_28th() -> None:
    got = DateRange(date(2026, 11, 3), date(2026, 12, 2)).year_earlier()
    assert got == DateRange(date(2025, 11, 3), date(2025, 12, 2))
    leap = DateRange(date(2028, 2, 1), date(2028, 2, 29)).year_earlier()
    assert leap == DateRange(date(2027, 2, 1), date(2027, 2, 28))


@pytest.mark.parametrize(
    ("days", "bucket"),
    [
        (1, "hour"),
        (2, "hour"),
        (3, "day"),
        (92, "day"),
        (93, "week"),
        (731, "week"),
        (732, "month"),
    ],
)
def test_charts_bucket_by_hour_day_week_or_month_with_the_range_length(
    days: int, bucket: str
) -> None:
    start = date(2025, 1, 1)
    assert DateRange(start, start + timedelta(days=days - 1)).bucket() == bucket
