"""The reporting half of the client: values/series reports and metric aggregates.

`ReportQueries` is mixed into `KlaviyoClient`; it only needs the client's session and origin.
Klaviyo's Reporting API has very low limits (1/s, 2/m, 225/day): ask for many statistics and
groupings in one query rather than many small queries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import ValidationError

from klaviyo_analytics.klaviyo.errors import KlaviyoInvalidPayloadError
from klaviyo_analytics.klaviyo.models import checked_id
from klaviyo_analytics.klaviyo.paging import CursorGuard, next_link
from klaviyo_analytics.klaviyo.reports import (
    MetricAggregate,
    SeriesReport,
    Timeframe,
    ValuesReport,
    metric_aggregate_body,
    report_attributes,
    values_report_body,
)
from klaviyo_analytics.klaviyo.session import ApiSession

M = TypeVar("M", ValuesReport, SeriesReport, MetricAggregate)
# Each values/series report type: the operation (its rate limits) and the path it is posted to.
REPORTS: dict[str, tuple[str, str]] = {
    "campaign-values-report": ("query_campaign_values", "/api/campaign-values-reports"),
    "flow-values-report": ("query_flow_values", "/api/flow-values-reports"),
    "flow-series-report": ("query_flow_series", "/api/flow-series-reports"),
    "form-values-report": ("query_form_values", "/api/form-values-reports"),
    "segment-values-report": ("query_segment_values", "/api/segment-values-reports"),
}


class ReportQueries:
    """Report and aggregate queries; mixed into `KlaviyoClient`."""

    _session: ApiSession
    _origin: tuple[str, str, int | None]

    async def _report(self, operation: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a report query, following `links.next` and merging `results` across pages."""
        guard = CursorGuard(self._origin)
        document, url = await self._session.request(operation, "POST", path, body=body)
        guard.visited(url)
        merged = report_attributes(_checked_report(document, path, url))
        next_url = next_link(document)
        while next_url is not None:
            guard.check(next_url, method="POST")
            document, url = await self._session.request(operation, "POST", next_url, body=body)
            guard.visited(url)
            more = report_attributes(_checked_report(document, path, url))
            merged["results"] = [*merged.get("results", []), *more.get("results", [])]
            next_url = next_link(document)
        return merged

    async def _query(self, model: type[M], report_type: str, **options: Any) -> M:
        """POST one values/series report query of `report_type` and validate its results."""
        operation, path = REPORTS[report_type]
        body = values_report_body(report_type, **options)
        return _validated(model, await self._report(operation, path, body), path)

    async def query_campaign_values(
        self,
        *,
        statistics: Sequence[str],
        timeframe: Timeframe,
        conversion_metric_id: str,
        group_by: Sequence[str] | None = None,
        filter: str | None = None,
    ) -> ValuesReport:
        """Query campaign performance (POST /api/campaign-values-reports; 1/s, 2/m, 225/day).

        Raises ValueError without statistics, KlaviyoError subclasses from the API.
        """
        return await self._query(ValuesReport, "campaign-values-report", statistics=statistics,
                                 timeframe=timeframe, conversion_metric_id=conversion_metric_id,
                                 group_by=group_by, filter=filter)  # fmt: skip

    async def query_flow_values(
        self,
        *,
        statistics: Sequence[str],
        timeframe: Timeframe,
        conversion_metric_id: str,
        group_by: Sequence[str] | None = None,
        filter: str | None = None,
    ) -> ValuesReport:
        """Query flow performance (POST /api/flow-values-reports; 1/s, 2/m, 225/day).

        Raises ValueError without statistics, KlaviyoError subclasses from the API.
        """
        return await self._query(ValuesReport, "flow-values-report", statistics=statistics,
                                 timeframe=timeframe, conversion_metric_id=conversion_metric_id,
                                 group_by=group_by, filter=filter)  # fmt: skip

    async def query_flow_series(
        self,
        *,
        statistics: Sequence[str],
        timeframe: Timeframe,
        interval: Literal["hourly", "daily", "weekly", "monthly"],
        conversion_metric_id: str,
        group_by: Sequence[str] | None = None,
        filter: str | None = None,
    ) -> SeriesReport:
        """Query flow performance over time (POST /api/flow-series-reports; 1/s, 2/m, 225/day).

        Raises ValueError without statistics, KlaviyoError subclasses from the API.
        """
        return await self._query(SeriesReport, "flow-series-report", statistics=statistics,
                                 timeframe=timeframe, interval=interval,
                                 conversion_metric_id=conversion_metric_id, group_by=group_by,
                                 filter=filter)  # fmt: skip

    async def query_form_values(
        self,
        *,
        statistics: Sequence[str],
        timeframe: Timeframe,
        group_by: Sequence[str] | None = None,
        filter: str | None = None,
    ) -> ValuesReport:
        """Query signup form performance (POST /api/form-values-reports; 1/s, 2/m, 225/day).

        Raises ValueError without statistics, KlaviyoError subclasses from the API.
        """
        return await self._query(ValuesReport, "form-values-report", statistics=statistics,
                                 timeframe=timeframe, group_by=group_by, filter=filter)  # fmt: skip

    async def query_segment_values(
        self, *, statistics: Sequence[str], timeframe: Timeframe, filter: str | None = None
    ) -> ValuesReport:
        """Query segment growth (POST /api/segment-values-reports; 1/s, 2/m, 225/day).

        Raises ValueError without statistics, KlaviyoError subclasses from the API.
        """
        return await self._query(ValuesReport, "segment-values-report", statistics=statistics,
                                 timeframe=timeframe, filter=filter)  # fmt: skip

    async def query_metric_aggregates(
        self,
        *,
        metric_id: str,
        start: datetime,
        end: datetime,
        measurements: Sequence[str] = ("count", "sum_value", "unique"),
        interval: Literal["hour", "day", "week", "month"] = "day",
        timezone: str = "UTC",
        by: Sequence[str] | None = None,
        filters: Sequence[str] = (),
    ) -> MetricAggregate:
        """Aggregate one metric over [start, end) (POST /api/metric-aggregates; 3/s, 60/m).

        Buckets are cut in `timezone` (pass the account's). Raises ValueError for an empty
        range or naive datetimes, KlaviyoError subclasses from the API.
        """
        body = metric_aggregate_body(
            metric_id=checked_id(metric_id, "metric id"),
            measurements=measurements,
            start=start,
            end=end,
            interval=interval,
            timezone=timezone,
            by=by,
            filters=filters,
        )
        path = "/api/metric-aggregates"
        document, url = await self._session.request(
            "query_metric_aggregates", "POST", path, body=body
        )
        return _validated(
            MetricAggregate, report_attributes(_checked_report(document, path, url)), path
        )


def _checked_report(document: dict[str, Any], path: str, url: str) -> dict[str, Any]:
    data = document.get("data")
    if not isinstance(data, Mapping) or not isinstance(data.get("attributes"), Mapping):
        raise KlaviyoInvalidPayloadError(
            f"POST {path} answered a document without data.attributes", method="POST", url=url
        )
    return document


def _validated(model: type[M], attributes: dict[str, Any], path: str) -> M:
    try:
        return model.model_validate(attributes)
    except ValidationError as exc:
        raise KlaviyoInvalidPayloadError(
            f"POST {path} answered an invalid report: {exc.error_count()} problem(s), first "
            f"{exc.errors(include_url=False, include_input=False)[0]['msg']}",
            method="POST",
            url=path,
        ) from exc
