"""Helpers for the statistics tests: a metric, events on chosen days, and an exact refresh."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from klaviyo_analytics.db.pool import Conn, Database
from klaviyo_analytics.db.repos.aggregates import AggregateRepository
from klaviyo_analytics.db.repos.events import Event, EventRepository
from klaviyo_analytics.db.repos.metrics import Metric, MetricRepository

NY = "America/New_York"


@pytest.fixture(name="conn")
async def conn_fixture(database: Database) -> AsyncIterator[Conn]:
    """A connection in a transaction that is rolled back at the end of the test."""
    async with database.connection() as c, c.transaction(force_rollback=True):
        yield c


async def add_metric(conn: Conn, metric_id: str, name: str | None = None) -> None:
    await MetricRepository().upsert_many(conn, [Metric(metric_id, name or metric_id)])


def local_noon(day: date, tz: str = NY) -> datetime:
    return datetime.combine(day, time(12), ZoneInfo(tz)).astimezone(UTC)


async def add_daily_values(
    conn: Conn, metric_id: str, first: date, values: Sequence[float], *, tz: str = NY
) -> None:
    """Insert one event per day (at local noon) whose value is the day's figure, then refresh."""
    events = [
        Event(
            id=f"{metric_id}-{i}",
            timestamp=local_noon(first + timedelta(days=i), tz),
            metric_id=metric_id,
            value=Decimal(f"{v:.2f}"),
        )
        for i, v in enumerate(values)
    ]
    await add_events(conn, events, tz=tz)


async def add_events(conn: Conn, events: Sequence[Event], *, tz: str = NY) -> None:
    """Write events and refresh every aggregate bucket they touch."""
    await EventRepository().upsert_many(conn, list(events))
    stamps = [e.timestamp for e in events]
    await AggregateRepository().refresh(conn, start=min(stamps), end=max(stamps), timezone=tz)


def day_bounds(first: date, last: date, tz: str = NY) -> tuple[datetime, datetime]:
    """Return the UTC instants of local midnight on `first` and after `last`."""
    zone = ZoneInfo(tz)
    return (
        datetime.combine(first, time(0), zone).astimezone(UTC),
        datetime.combine(last + timedelta(days=1), time(0), zone).astimezone(UTC),
    )
