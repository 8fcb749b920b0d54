"""Answer the Reporting API and metric aggregates from the generated events themselves.

Numbers are computed from the same event columns the events endpoint serves, so a campaign's
`opens` equals the count of its Opened Email events in the timeframe. A custom timeframe's offset
is ignored and the account's time zone is used, as the spec says.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from klaviyo_analytics.sandbox import catalog as c
from klaviyo_analytics.sandbox.apierror import invalid
from klaviyo_analytics.sandbox.filters import Condition, _Parser, parse_datetime
from klaviyo_analytics.sandbox.generator import (
    KIND_CAMPAIGN,
    KIND_FLOW,
    EventColumns,
    StoreGenerator,
)

_STATS = (
    "average_order_value", "bounce_rate", "bounced", "bounced_or_failed",
    "bounced_or_failed_rate", "click_rate", "click_to_open_rate", "clicks", "clicks_unique",
    "conversion_rate", "conversion_uniques", "conversion_value", "conversions", "delivered",
    "delivery_rate", "failed", "failed_rate", "message_segment_count_sum", "open_rate", "opens",
    "opens_unique", "recipients", "revenue_per_recipient", "spam_complaint_rate",
    "spam_complaints", "text_message_credit_usage_amount", "text_message_roi",
    "text_message_spend", "unsubscribe_rate", "unsubscribe_uniques", "unsubscribes",
)  # fmt: skip
_FORM_STATS = ("closed_form", "closed_form_uniques", "qualified_form", "qualified_form_uniques",
               "submit_rate", "submits", "submitted_form_step", "submitted_form_step_uniques",
               "viewed_form", "viewed_form_step", "viewed_form_step_uniques",
               "viewed_form_uniques")  # fmt: skip
_SEGMENT_STATS = ("members_added", "members_removed", "net_members_changed", "total_members")


def _attrs(body: Any, parameter: str = "data") -> dict[str, Any]:
    try:
        attrs = body["data"]["attributes"]
    except (KeyError, TypeError):
        raise invalid(
            "The body must be a JSON:API document with data.attributes", parameter
        ) from None
    if not isinstance(attrs, dict):
        raise invalid("data.attributes must be an object", parameter)
    return attrs


def _statistics(attrs: dict[str, Any], allowed: tuple[str, ...]) -> list[str]:
    stats = attrs.get("statistics")
    if not isinstance(stats, list) or not stats:
        raise invalid("'statistics' is required and must be a non-empty list", "statistics")
    for s in stats:
        if s not in allowed:
            raise invalid(f"'{s}' is not a valid statistic", "statistics")
    return stats


def resolve_timeframe(timeframe: Any, zone: ZoneInfo, now_ts: int) -> tuple[int, int]:
    """Turn a `timeframe` object into `[start, end)` unix seconds; raise ApiError (400) if bad."""
    if not isinstance(timeframe, dict):
        raise invalid("'timeframe' is required", "timeframe")
    if "start" in timeframe and "end" in timeframe:
        start, end = (
            datetime.fromisoformat(str(timeframe[k]).replace("Z", "+00:00")).replace(tzinfo=zone)
            if _valid_iso(timeframe[k])
            else None
            for k in ("start", "end")
        )
        if start is None or end is None:
            raise invalid("timeframe start and end must be ISO 8601 datetimes", "timeframe")
        if end <= start or end - start > timedelta(days=366):
            raise invalid("timeframe must be non-empty and at most one year", "timeframe")
        return int(start.timestamp()), int(end.timestamp())
    now = datetime.fromtimestamp(now_ts, zone)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = today.replace(day=1)
    week = today - timedelta(days=today.weekday())
    key = timeframe.get("key")
    ranges = {
        "today": (today, now + timedelta(seconds=1)),
        "yesterday": (today - timedelta(days=1), today),
        "last_7_days": (today - timedelta(days=7), today),
        "last_30_days": (today - timedelta(days=30), today),
        "last_90_days": (today - timedelta(days=90), today),
        "last_365_days": (today - timedelta(days=365), today),
        "last_3_months": (_add_months(month, -3), month),
        "last_12_months": (_add_months(month, -12), month),
        "this_month": (month, now + timedelta(seconds=1)),
        "last_month": (_add_months(month, -1), month),
        "this_week": (week, now + timedelta(seconds=1)),
        "last_week": (week - timedelta(days=7), week),
        "this_year": (month.replace(month=1), now + timedelta(seconds=1)),
        "last_year": (month.replace(year=month.year - 1, month=1), month.replace(month=1)),
    }
    if key not in ranges:
        raise invalid(f"'{key}' is not a valid timeframe key", "timeframe")
    lo, hi = ranges[key]
    return int(lo.timestamp()), int(hi.timestamp())


def _valid_iso(value: Any) -> bool:
    try:
        datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _add_months(d: datetime, months: int) -> datetime:
    total = d.year * 12 + d.month - 1 + months
    return d.replace(year=total // 12, month=total % 12 + 1)


def _filter_ids(text: Any, fields: tuple[str, ...]) -> dict[str, set[str]]:
    """Parse a report filter (equals / any / contains-any on id fields) into allowed ids."""
    if text is None or text == "":
        return {}
    if not isinstance(text, str):
        raise invalid("'filter' must be a string", "filter")
    parser = _Parser(text, "filter")
    conditions: list[Condition] = []
    parser.expression(conditions)
    out: dict[str, set[str]] = {}
    for cond in conditions:
        if cond.field not in fields or cond.op not in ("equals", "any", "contains-any"):
            raise invalid(f"'{cond.op}({cond.field})' is not a supported report filter", "filter")
        values = cond.value if isinstance(cond.value, list) else [cond.value]
        out[cond.field] = {str(getattr(v, "raw", v)) for v in values}
    return out


class Reports:
    """Compute report documents for one store."""

    def __init__(self, generator: StoreGenerator) -> None:
        """Bind to a generator."""
        self.gen = generator
        self.cat = generator.catalog
        self.zone = ZoneInfo(generator.options.timezone)

    def _events(self, lo: int, hi: int, now_ts: int) -> EventColumns:
        lo = max(lo, self.gen.start_ts)
        hi = min(hi, now_ts + 1)
        if hi <= lo:
            return self.gen.events_between(lo, lo + 1).take(slice(0, 0))
        return self.gen.events_between(lo, hi)

    def message_stats(
        self, ev: EventColumns, kind: int, size: int, conversion_metric: int
    ) -> dict[str, np.ndarray]:
        """Return every message statistic per source index (`size` sources of `kind`)."""
        mine = ev.kind == kind
        profiles = self.cat.options.profiles + 1

        def count(metrics: tuple[int, ...]) -> np.ndarray:
            m = mine & np.isin(ev.metric, metrics)
            return np.bincount(ev.source[m], minlength=size)[:size].astype(float)

        def unique(metrics: tuple[int, ...]) -> np.ndarray:
            m = mine & np.isin(ev.metric, metrics)
            pairs = np.unique(ev.source[m].astype(np.int64) * profiles + ev.profile[m] + 1)
            return np.bincount(pairs // profiles, minlength=size)[:size].astype(float)

        delivered = count((c.RECEIVED_EMAIL, c.RECEIVED_SMS))
        bounced = count((c.BOUNCED_EMAIL,))
        recipients = delivered + bounced
        opens_u = unique((c.OPENED_EMAIL,))
        clicks_u = unique((c.CLICKED_EMAIL, c.CLICKED_SMS))
        conv = count((conversion_metric,)) if conversion_metric == c.PLACED_ORDER else 0 * bounced
        conv_u = unique((conversion_metric,)) if conversion_metric == c.PLACED_ORDER else conv
        m = mine & (ev.metric == conversion_metric) & (conversion_metric == c.PLACED_ORDER)
        value: np.ndarray = np.bincount(ev.source[m], weights=ev.value[m], minlength=size)[:size]
        value = value / 100
        unsub_u = unique((c.UNSUBSCRIBED,))
        spam = count((c.MARKED_SPAM,))
        zero = np.zeros(size)

        def rate(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            out: np.ndarray = np.divide(a, b, out=np.zeros(size), where=b > 0)
            return out

        return {
            "recipients": recipients, "delivered": delivered, "bounced": bounced,
            "bounced_or_failed": bounced, "failed": zero, "opens": count((c.OPENED_EMAIL,)),
            "opens_unique": opens_u, "clicks": count((c.CLICKED_EMAIL, c.CLICKED_SMS)),
            "clicks_unique": clicks_u, "conversions": conv, "conversion_uniques": conv_u,
            "conversion_value": np.round(value, 2), "unsubscribes": count((c.UNSUBSCRIBED,)),
            "unsubscribe_uniques": unsub_u, "spam_complaints": spam,
            "open_rate": rate(opens_u, delivered), "click_rate": rate(clicks_u, delivered),
            "click_to_open_rate": rate(clicks_u, opens_u),
            "bounce_rate": rate(bounced, recipients),
            "bounced_or_failed_rate": rate(bounced, recipients), "failed_rate": zero,
            "delivery_rate": rate(delivered, recipients),
            "conversion_rate": rate(conv_u, delivered),
            "unsubscribe_rate": rate(unsub_u, delivered),
            "spam_complaint_rate": rate(spam, delivered),
            "average_order_value": np.round(rate(value, conv), 2),
            "revenue_per_recipient": np.round(rate(value, delivered), 2),
            "message_segment_count_sum": zero, "text_message_credit_usage_amount": zero,
            "text_message_roi": zero, "text_message_spend": zero,
        }  # fmt: skip

    def _conversion_metric(self, attrs: dict[str, Any]) -> int:
        metric = self.cat.metric_by_id.get(str(attrs.get("conversion_metric_id")))
        if metric is None:
            raise invalid("'conversion_metric_id' must name a metric of the account",
                          "conversion_metric_id")  # fmt: skip
        return metric.index

    @staticmethod
    def _number(stat: str, value: float) -> float | int:
        return round(value, 6) if "rate" in stat or stat in (
            "conversion_value", "average_order_value", "revenue_per_recipient",
        ) else int(value)  # fmt: skip

    def campaign_values(self, body: Any, now_ts: int) -> dict[str, Any]:
        """Answer POST /api/campaign-values-reports."""
        attrs = _attrs(body)
        stats = _statistics(attrs, _STATS)
        metric = self._conversion_metric(attrs)
        lo, hi = resolve_timeframe(attrs.get("timeframe"), self.zone, now_ts)
        only = _filter_ids(
            attrs.get("filter"), ("campaign_id", "send_channel", "campaign_message_id")
        )
        table = self.message_stats(self._events(lo, hi, now_ts), KIND_CAMPAIGN,
                                   len(self.cat.campaigns), metric)  # fmt: skip
        results = []
        for cp in self.cat.campaigns:
            if cp.send_ts >= hi or (only.get("campaign_id") and cp.id not in only["campaign_id"]):
                continue
            if only.get("send_channel") and cp.channel not in only["send_channel"]:
                continue
            groupings = {"send_channel": cp.channel, "campaign_id": cp.id,
                         "campaign_message_id": cp.message_id}  # fmt: skip
            results.append({"groupings": groupings, "statistics": {
                s: self._number(s, float(table[s][cp.index])) for s in stats}})  # fmt: skip
        return {"data": {"type": "campaign-values-report", "attributes": {"results": results}}}

    def flow_values(self, body: Any, now_ts: int, series: bool = False) -> dict[str, Any]:
        """Answer POST /api/flow-values-reports (or flow-series-reports with `series`)."""
        attrs = _attrs(body)
        stats = _statistics(attrs, _STATS)
        metric = self._conversion_metric(attrs)
        lo, hi = resolve_timeframe(attrs.get("timeframe"), self.zone, now_ts)
        only = _filter_ids(attrs.get("filter"), ("flow_id", "send_channel", "flow_message_id"))
        messages = [
            m for m in self.cat.flow_messages
            if (not only.get("flow_id") or self.cat.flows[m.flow_index].id in only["flow_id"])
            and (not only.get("send_channel") or m.channel in only["send_channel"])
            and (not only.get("flow_message_id") or m.id in only["flow_message_id"])
        ]  # fmt: skip
        size = len(self.cat.flow_messages)
        events = self._events(lo, hi, now_ts)
        if series:
            edges = self.buckets(lo, hi, attrs.get("interval"), series_names=True)
            tables = [
                self.message_stats(events.take((events.ts >= a) & (events.ts < b)), KIND_FLOW,
                                   size, metric)
                for a, b in itertools.pairwise(edges)
            ]  # fmt: skip
        else:
            tables = [self.message_stats(events, KIND_FLOW, size, metric)]
        results = []
        for m in messages:
            groupings = {"flow_id": self.cat.flows[m.flow_index].id, "send_channel": m.channel,
                         "flow_message_id": m.id}  # fmt: skip
            if series:
                values: dict[str, Any] = {
                    s: [self._number(s, float(t[s][m.index])) for t in tables] for s in stats
                }
            else:
                values = {s: self._number(s, float(tables[0][s][m.index])) for s in stats}
            results.append({"groupings": groupings, "statistics": values})
        if series:
            attributes: dict[str, Any] = {
                "results": results,
                "date_times": [datetime.fromtimestamp(t, self.zone).isoformat()
                               for t in edges[:-1]],
            }  # fmt: skip
            return {"data": {"type": "flow-series-report", "attributes": attributes}}
        return {"data": {"type": "flow-values-report", "attributes": {"results": results}}}

    def form_values(self, body: Any, now_ts: int) -> dict[str, Any]:
        """Answer POST /api/form-values-reports from Viewed/Submitted Form events."""
        attrs = _attrs(body)
        stats = _statistics(attrs, _FORM_STATS)
        lo, hi = resolve_timeframe(attrs.get("timeframe"), self.zone, now_ts)
        only = _filter_ids(attrs.get("filter"), ("form_id",))
        ev = self._events(lo, hi, now_ts)
        results = []
        for form in self.cat.forms:
            if only.get("form_id") and form.id not in only["form_id"]:
                continue
            views = ev.profile[(ev.metric == c.VIEWED_FORM) & (ev.aux == form.index)]
            subs = ev.profile[(ev.metric == c.SUBMITTED_FORM) & (ev.aux == form.index)]
            # Anonymous views count once each (no profile to deduplicate them by).
            views_u = np.unique(views[views >= 0]).size + int((views < 0).sum())
            values = {
                "viewed_form": views.size, "viewed_form_uniques": views_u,
                "submits": subs.size, "submit_rate": round(subs.size / views_u, 6) if views_u else 0.0,
                "viewed_form_step": views.size, "viewed_form_step_uniques": views_u,
                "submitted_form_step": subs.size,
                "submitted_form_step_uniques": np.unique(subs).size,
                "qualified_form": views.size, "qualified_form_uniques": views_u,
                "closed_form": views.size - subs.size, "closed_form_uniques": views_u - subs.size,
            }  # fmt: skip
            results.append({"groupings": {"form_id": form.id},
                            "statistics": {s: values[s] for s in stats}})  # fmt: skip
        return {"data": {"type": "form-values-report", "attributes": {"results": results}}}

    def segment_values(self, body: Any, now_ts: int) -> dict[str, Any]:
        """Answer POST /api/segment-values-reports (membership is static in the sandbox)."""
        attrs = _attrs(body)
        stats = _statistics(attrs, _SEGMENT_STATS)
        lo, hi = resolve_timeframe(attrs.get("timeframe"), self.zone, now_ts)
        only = _filter_ids(attrs.get("filter"), ("segment_id",))
        results = []
        for seg in self.cat.segments:
            if only.get("segment_id") and seg.id not in only["segment_id"]:
                continue
            total = int(np.count_nonzero(self.cat.segment_masks[seg.index]))
            values = {"total_members": total, "members_added": 0, "members_removed": 0,
                      "net_members_changed": 0}  # fmt: skip
            results.append({"groupings": {"segment_id": seg.id},
                            "statistics": {s: values[s] for s in stats}})  # fmt: skip
        del lo, hi
        return {"data": {"type": "segment-values-report", "attributes": {"results": results}}}

    def buckets(self, lo: int, hi: int, interval: Any, series_names: bool = False) -> list[int]:
        """Return bucket edges (unix seconds) covering `[lo, hi)` in the account's zone."""
        names = {"hourly": "hour", "daily": "day", "weekly": "week", "monthly": "month"}
        unit = names.get(interval, interval) if series_names else interval
        if unit not in ("hour", "day", "week", "month"):
            raise invalid(f"'{interval}' is not a valid interval", "interval")
        start = datetime.fromtimestamp(lo, self.zone)
        if unit == "hour":
            start = start.replace(minute=0, second=0, microsecond=0)
        else:
            start = start.replace(hour=0, minute=0, second=0, microsecond=0)
            if unit == "week":
                start -= timedelta(days=start.weekday())
            elif unit == "month":
                start = start.replace(day=1)
        edges = []
        current = start.replace(tzinfo=None)
        while True:
            ts = int(current.replace(tzinfo=self.zone).timestamp())
            edges.append(ts)
            if ts >= hi or len(edges) > 10_000:
                break
            if unit == "month":
                current = _add_months(current, 1)
            else:
                current += {"hour": timedelta(hours=1), "day": timedelta(days=1),
                            "week": timedelta(days=7)}[unit]  # fmt: skip
        return edges

    def metric_aggregate(self, body: Any, now_ts: int, base: str) -> dict[str, Any]:
        """Answer POST /api/metric-aggregates (count, sum_value, unique; by $message/$flow)."""
        attrs = _attrs(body)
        metric = self.cat.metric_by_id.get(str(attrs.get("metric_id")))
        if metric is None:
            raise invalid("'metric_id' must name a metric of the account", "metric_id")
        measurements = attrs.get("measurements")
        if not isinstance(measurements, list) or not measurements or not set(measurements) <= {
            "count", "sum_value", "unique"}:  # fmt: skip
            raise invalid("'measurements' must list count, sum_value or unique", "measurements")
        zone_name = attrs.get("timezone") or "UTC"
        try:
            zone = ZoneInfo(zone_name)
        except (KeyError, ValueError):
            raise invalid(f"'{zone_name}' is not a valid timezone", "timezone") from None
        lo, hi = self._aggregate_range(attrs.get("filter"))
        by = attrs.get("by") or []
        if not set(by) <= {"$message", "$attributed_message", "$flow", "$attributed_flow"}:
            raise invalid(f"the sandbox cannot group by {by}", "by")
        saved_zone, self.zone = self.zone, zone
        try:
            edges = self.buckets(lo, hi, attrs.get("interval") or "day")
        finally:
            self.zone = saved_zone
        ev = self._events(lo, hi, now_ts)
        ev = ev.take(ev.metric == metric.index)
        keys = [self._dimension(ev, i, by) for i in range(len(ev))] if by else [()] * len(ev)
        slot = np.searchsorted(np.array(edges), ev.ts, side="right") - 1
        groups: dict[tuple[str, ...], dict[str, list[Any]]] = {}
        seen: set[tuple[tuple[str, ...], int, int]] = set()
        n = len(edges) - 1
        for i, key in enumerate(keys):
            g = groups.setdefault(key, {"count": [0] * n, "sum_value": [0] * n, "unique": [0] * n})
            s = int(slot[i])
            g["count"][s] += 1
            g["sum_value"][s] += int(ev.value[i])
            if (key, s, int(ev.profile[i])) not in seen:
                seen.add((key, s, int(ev.profile[i])))
                g["unique"][s] += 1
        if not by and not groups:
            groups[()] = {"count": [0] * n, "sum_value": [0] * n, "unique": [0] * n}
        data = []
        for key in sorted(groups):
            g = groups[key]
            g["sum_value"] = [round(v / 100, 2) for v in g["sum_value"]]
            data.append({"dimensions": list(key),
                         "measurements": {m: g[m] for m in measurements}})  # fmt: skip
        dates = [datetime.fromtimestamp(t, zone).isoformat() for t in edges[:-1]]
        aggregate_id = f"{metric.id}-{lo}-{hi}"
        return {"data": {"type": "metric-aggregate", "id": aggregate_id,
                         "attributes": {"dates": dates, "data": data},
                         "links": {"self": f"{base}/api/metric-aggregates/"}}}  # fmt: skip

    def _aggregate_range(self, filters: Any) -> tuple[int, int]:
        if not isinstance(filters, list) or not filters:
            raise invalid("'filter' must list a datetime range", "filter")
        lo = hi = None
        for text in filters:
            parser = _Parser(str(text), "filter")
            conds: list[Condition] = []
            parser.expression(conds)
            for cond in conds:
                if cond.field != "datetime":
                    raise invalid(f"the sandbox cannot filter aggregates on '{cond.field}'",
                                  "filter")  # fmt: skip
                value = parse_datetime(getattr(cond.value, "raw", str(cond.value)))
                if cond.op == "greater-or-equal":
                    lo = value
                elif cond.op == "less-than":
                    hi = value
                else:
                    raise invalid(f"'{cond.op}' is not supported on datetime here", "filter")
        if lo is None or hi is None or hi <= lo:
            raise invalid("'filter' needs greater-or-equal and less-than on datetime", "filter")
        return lo, hi

    def _dimension(self, ev: EventColumns, i: int, by: list[str]) -> tuple[str, ...]:
        kind, source = int(ev.kind[i]), int(ev.source[i])
        message = flow = ""
        if kind == KIND_CAMPAIGN:
            message = self.cat.campaigns[source].message_id
        elif kind == KIND_FLOW:
            fm = self.cat.flow_messages[source]
            message, flow = fm.id, self.cat.flows[fm.flow_index].id
        return tuple(message if "message" in b else flow for b in by)
