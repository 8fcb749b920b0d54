"""One date-range vocabulary for the whole product: store-local dates, presets, UTC bounds.

A `DateRange` is a pair of inclusive *local* dates of the store. Its instants are computed in
the store's time zone (zoneinfo, so DST days are 23 or 25 hours long) and returned in UTC.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from klaviyo_analytics.analytics.errors import InvalidParameterError, InvalidRangeError
from klaviyo_analytics.db.pool import Conn
from klaviyo_analytics.db.repos.sync_state import SyncStateRepository

__all__ = [
    "MAX_RANGE_DAYS",
    "PRESETS",
    "Bucket",
    "DateRange",
    "InvalidRangeError",
    "local_today",
    "resolve_range",
    "store_timezone",
    "zone",
]

logger = logging.getLogger(__name__)

PRESETS = (
    "today",
    "yesterday",
    "last-7-days",
    "last-30-days",
    "last-90-days",
    "this-month",
    "last-month",
    "this-year",
)
DEFAULT_PRESET = "last-30-days"
Bucket = Literal["hour", "day", "week", "month"]
# The longest ranges drawn with hourly, daily and weekly buckets; longer ones go by month.
HOURLY_MAX_DAYS = 2
DAILY_MAX_DAYS = 92
WEEKLY_MAX_DAYS = 731
MAX_RANGE_DAYS = 3660


def zone(tz: str) -> ZoneInfo:
    """Return the zone named `tz`.

    Raises InvalidParameterError naming the zone when it is unknown.
    """
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidParameterError(f"unknown time zone {tz!r}") from None


@dataclass(frozen=True)
class DateRange:
    """The inclusive local dates `start` .. `end` of the store."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.start > self.end:
            raise InvalidRangeError(f"start {self.start} is after end {self.end}")

    @property
    def days(self) -> int:
        """Return the number of dates in the range (both ends included)."""
        return (self.end - self.start).days + 1

    def previous(self) -> DateRange:
        """Return the range of the same length that ends the day before this one starts."""
        end = self.start - timedelta(days=1)
        return DateRange(end - timedelta(days=self.days - 1), end)

    def year_earlier(self) -> DateRange:
        """Return the same dates a year earlier (29 February becomes the 28th)."""

        def back(d: date) -> date:
            try:
                return d.replace(year=d.year - 1)
            except ValueError:  # 29 February
                return d.replace(year=d.year - 1, day=28)

        return DateRange(back(self.start), back(self.end))

    def bounds(self, tz: str) -> tuple[datetime, datetime]:
        """Return the half-open UTC instants [local midnight of start, local midnight after end).

        Raises InvalidParameterError for an unknown zone.
        """
        z = zone(tz)
        lo = datetime.combine(self.start, time(0), tzinfo=z)
        hi = datetime.combine(self.end + timedelta(days=1), time(0), tzinfo=z)
        return lo.astimezone(UTC), hi.astimezone(UTC)

    def dates(self) -> list[date]:
        """Return every date of the range, oldest first."""
        return [self.start + timedelta(days=i) for i in range(self.days)]

    def bucket(self) -> Bucket:
        """Return the bucket a chart of this range uses: hours for a day or two, days up to
        three months, weeks up to two years, months beyond (a year is not 335 daily bars)."""
        if self.days <= HOURLY_MAX_DAYS:
            return "hour"
        if self.days <= DAILY_MAX_DAYS:
            return "day"
        return "week" if self.days <= WEEKLY_MAX_DAYS else "month"

    def __str__(self) -> str:
        return f"{self.start.isoformat()}..{self.end.isoformat()}"


def _preset(preset: str, today: date) -> DateRange:
    if preset == "today":
        return DateRange(today, today)
    if preset == "yesterday":
        day = today - timedelta(days=1)
        return DateRange(day, day)
    if preset.startswith("last-") and preset.endswith("-days"):
        n = int(preset[len("last-") : -len("-days")])
        return DateRange(today - timedelta(days=n - 1), today)
    if preset == "this-month":
        return DateRange(today.replace(day=1), today)
    if preset == "last-month":
        end = today.replace(day=1) - timedelta(days=1)
        return DateRange(end.replace(day=1), end)
    # this-year
    return DateRange(date(today.year, 1, 1), today)


def resolve_range(
    *,
    preset: str | None = None,
    start: date | None = None,
    end: date | None = None,
    today: date,
) -> DateRange:
    """Turn a preset, or explicit start and end dates, into a `DateRange`.

    `today` is the store's local date (see `local_today`). With nothing given, the range is
    the last 30 days. "last-N-days" presets include today.
    Raises InvalidRangeError for an unknown preset (listing the valid ones), a preset given
    together with start/end, only one of start and end, start after end, or a range longer
    than 3660 days.
    """
    if preset is not None:
        if start is not None or end is not None:
            raise InvalidRangeError(
                f"give either a preset ({preset!r}) or start and end dates, not both"
            )
        if preset not in PRESETS:
            raise InvalidRangeError(
                f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}"
            )
        return _preset(preset, today)
    if start is None and end is None:
        return _preset(DEFAULT_PRESET, today)
    if start is None or end is None:
        missing = "start" if start is None else "end"
        raise InvalidRangeError(f"both start and end are needed; {missing} is missing")
    if start > end:
        raise InvalidRangeError(f"start {start} is after end {end}")
    days = (end - start).days + 1
    if days > MAX_RANGE_DAYS:
        raise InvalidRangeError(
            f"range {start}..{end} is {days} days long; at most {MAX_RANGE_DAYS} days are allowed"
        )
    return DateRange(start, end)


def local_today(tz: str, now: datetime | None = None) -> date:
    """Return the store's local date at `now` (the current time by default; naive means UTC).

    Raises InvalidParameterError for an unknown zone.
    """
    moment = now if now is not None else datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone(tz)).date()


async def store_timezone(conn: Conn, override: str | None = None) -> str:
    """Return the store's time zone: `override`, else the account's (saved by the sync), else UTC.

    Raises InvalidParameterError when the override is not a known zone.
    """
    if override:
        zone(override)
        return override
    saved = await SyncStateRepository().get(conn, "account", "")
    found = saved.state.get("timezone") if saved is not None else None
    if isinstance(found, str) and found:
        try:
            zone(found)
        except InvalidParameterError:
            logger.warning("the account's time zone %r is unknown here; using UTC", found)
            return "UTC"
        return found
    return "UTC"
