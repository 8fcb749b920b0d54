"""Request bodies and results of Klaviyo's Reporting API and metric aggregates.

The Reporting API (`*-values-reports`, `*-series-reports`) is what Klaviyo's own UI shows for
campaign and flow performance; its limits are very low (1/s, 2/m, 225/day), so callers should
ask for many statistics and groupings in one query rather than many small queries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


@dataclass(frozen=True)
class Timeframe:
    """A report's timeframe: either a predefined `key` (e.g. "last_30_days") or start/end.

    Klaviyo ignores the offsets of `start`/`end` and reads them in the account's timezone.
    Raises ValueError if neither or both forms are given.
    """

    key: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        has_range = self.start is not None and self.end is not None
        if (self.key is None) == (not has_range) or (self.start is None) != (self.end is None):
            raise ValueError("a timeframe needs either a key or both start and end")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError(f"timeframe start {self.start} is not before its end {self.end}")

    def to_json(self) -> dict[str, str]:
        """Return the JSON:API `timeframe` attribute."""
        if self.key is not None:
            return {"key": self.key}
        assert self.start is not None and self.end is not None
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


def values_report_body(
    report_type: str,
    *,
    statistics: Sequence[str],
    timeframe: Timeframe,
    conversion_metric_id: str | None = None,
    group_by: Sequence[str] | None = None,
    interval: str | None = None,
    filter: str | None = None,
) -> dict[str, Any]:
    """Build the JSON:API body of a values or series report query.

    Raises ValueError if no statistic is asked for.
    """
    if not statistics:
        raise ValueError(f"a {report_type} needs at least one statistic")
    attributes: dict[str, Any] = {"statistics": list(statistics), "timeframe": timeframe.to_json()}
    if conversion_metric_id is not None:
        attributes["conversion_metric_id"] = conversion_metric_id
    if group_by:
        attributes["group_by"] = list(group_by)
    if interval is not None:
        attributes["interval"] = interval
    if filter is not None:
        attributes["filter"] = filter
    return {"data": {"type": report_type, "attributes": attributes}}


def aggregate_datetime(moment: datetime, timezone: str) -> str:
    """Format a datetime for a metric-aggregates filter: naive ISO 8601 in the query's zone.

    Raises ValueError if `moment` is naive.
    """
    if moment.tzinfo is None:
        raise ValueError(f"datetime {moment} has no timezone")
    zone = UTC if timezone == "UTC" else ZoneInfo(timezone)
    return moment.astimezone(zone).replace(tzinfo=None).isoformat()


def metric_aggregate_body(
    *,
    metric_id: str,
    measurements: Sequence[str],
    start: datetime,
    end: datetime,
    interval: str,
    timezone: str,
    by: Sequence[str] | None = None,
    filters: Sequence[str] = (),
    page_size: int | None = None,
) -> dict[str, Any]:
    """Build the body of POST /api/metric-aggregates for [start, end).

    Raises ValueError if the range is empty, a bound is naive, or no measurement is asked for.
    """
    if not measurements:
        raise ValueError("a metric aggregate needs at least one measurement")
    if start >= end:
        raise ValueError(f"aggregate start {start} is not before its end {end}")
    attributes: dict[str, Any] = {
        "metric_id": metric_id,
        "measurements": list(measurements),
        "interval": interval,
        "timezone": timezone,
        "filter": [
            f"greater-or-equal(datetime,{aggregate_datetime(start, timezone)})",
            f"less-than(datetime,{aggregate_datetime(end, timezone)})",
            *filters,
        ],
    }
    if by:
        attributes["by"] = list(by)
    if page_size is not None:
        attributes["page_size"] = page_size
    return {"data": {"type": "metric-aggregate", "attributes": attributes}}


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ReportResult(_Model):
    """One row of a report: the grouping keys and the statistics for that group.

    Series reports give each statistic as a list aligned with `SeriesReport.date_times`.
    """

    groupings: dict[str, Any]
    statistics: dict[str, Any]


class ValuesReport(_Model):
    """The result of a values report query (campaign, flow, form or segment)."""

    type: str
    results: list[ReportResult]


class SeriesReport(_Model):
    """The result of a series report query: one value per interval per statistic."""

    type: str
    results: list[ReportResult]
    date_times: list[AwareDatetime] = Field(default_factory=list)


class AggregateRow(_Model):
    """One row of a metric aggregate: dimension values and one measurement list per name."""

    dimensions: list[str | None]
    measurements: dict[str, list[float | None]]


class MetricAggregate(_Model):
    """The result of POST /api/metric-aggregates: buckets starting at `dates`."""

    id: str | None = None
    dates: list[datetime]
    data: list[AggregateRow]


def report_attributes(document: Mapping[str, Any]) -> dict[str, Any]:
    """Return `data.type` merged into `data.attributes` of a report document, for validation.

    Raises ValueError if the document has no `data.attributes` object.
    """
    data = document.get("data")
    if not isinstance(data, Mapping) or not isinstance(data.get("attributes"), Mapping):
        raise ValueError("report document has no data.attributes object")
    return {**data["attributes"], "type": data.get("type"), "id": data.get("id")}
