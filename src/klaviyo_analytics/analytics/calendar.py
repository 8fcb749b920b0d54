"""`dim_time`: one row per date with ISO week, weekend and the country's public holidays."""

from __future__ import annotations

from datetime import date, timedelta

import holidays

from klaviyo_analytics.analytics.errors import InvalidParameterError
from klaviyo_analytics.db.pool import Conn


async def refresh_dim_time(conn: Conn, start: date, end: date, *, country: str = "US") -> int:
    """Write (insert or replace) the `dim_time` rows of `start` .. `end`; return how many.

    Holidays are the public holidays of `country` (an ISO 3166 code) per the `holidays` package.
    Raises InvalidParameterError for an unknown country or start after end.
    """
    if start > end:
        raise InvalidParameterError(f"start {start} is after end {end}")
    try:
        calendar = holidays.country_holidays(country, years=range(start.year, end.year + 1))
    except NotImplementedError:
        raise InvalidParameterError(f"no holiday calendar for country {country!r}") from None
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    names = [calendar.get(d) for d in days]
    cur = await conn.execute(
        "INSERT INTO dim_time (date, year, quarter, month, day, day_of_week, iso_week, iso_year,"
        " is_weekend, is_holiday, holiday_name)"
        " SELECT d, extract(year FROM d), extract(quarter FROM d), extract(month FROM d),"
        " extract(day FROM d), extract(isodow FROM d), extract(week FROM d),"
        " extract(isoyear FROM d), extract(isodow FROM d) >= 6, h IS NOT NULL, h"
        " FROM unnest(%s::date[], %s::text[]) AS t(d, h)"
        " ON CONFLICT (date) DO UPDATE SET year = EXCLUDED.year, quarter = EXCLUDED.quarter,"
        " month = EXCLUDED.month, day = EXCLUDED.day, day_of_week = EXCLUDED.day_of_week,"
        " iso_week = EXCLUDED.iso_week, iso_year = EXCLUDED.iso_year,"
        " is_weekend = EXCLUDED.is_weekend, is_holiday = EXCLUDED.is_holiday,"
        " holiday_name = EXCLUDED.holiday_name",
        (days, names),
    )
    return cur.rowcount
