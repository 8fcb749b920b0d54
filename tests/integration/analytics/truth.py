"""Independent answers from raw events, written for the tests (never calling analytics code).

The SQL here restates docs/analytics.md in a different shape (window functions and DISTINCT ON
instead of NOT EXISTS and LATERAL), and Python does the grouping, so that a mistake in the
production SQL does not repeat itself here.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg

ORDERS = """
WITH m AS (SELECT id, name FROM klaviyo_metrics),
o AS (SELECT e.* FROM klaviyo_events e JOIN m ON m.id = e.metric_id WHERE m.name = 'Placed Order'),
t AS (
  SELECT e.id, e.profile_id, e."timestamp", e.attributed_source_type, e.attributed_source_id,
         e.attributed_message_id, m.name
  FROM klaviyo_events e JOIN m ON m.id = e.metric_id
  WHERE m.name IN ('Opened Email', 'Clicked Email', 'Clicked SMS')
    AND e.attributed_message_id IS NOT NULL AND e.attributed_source_id IS NOT NULL),
lt AS (
  SELECT DISTINCT ON (o.id) o.id AS order_id, t.attributed_source_type AS st,
         t.attributed_source_id AS sid, t.attributed_message_id AS mid,
         CASE WHEN t.name = 'Clicked SMS' THEN 'sms' ELSE 'email' END AS medium
  FROM o JOIN t ON t.profile_id = o.profile_id AND t."timestamp" < o."timestamp"
   AND o."timestamp" - t."timestamp" <= CASE WHEN t.name = 'Clicked SMS'
       THEN make_interval(hours => %(sms_hours)s) ELSE make_interval(hours => %(email_hours)s) END
  WHERE o.attributed_source_id IS NULL
  ORDER BY o.id, t."timestamp" DESC, t.id DESC)
SELECT o.id, o."timestamp" AS ts, (o."timestamp" AT TIME ZONE %(tz)s)::date AS day, o.profile_id,
  coalesce(o.value, 0) AS value, o.properties ->> '$event_id' AS ref,
  CASE WHEN o.attributed_source_id IS NOT NULL THEN
    (CASE WHEN coalesce(c.channel, fm.channel, o.properties ->> '$attributed_channel',
          o.properties -> '$attribution' ->> '$attributed_channel') = 'sms'
          THEN 'sms' ELSE 'email' END) || '_' || o.attributed_source_type
   WHEN lt.order_id IS NOT NULL THEN lt.medium || '_' || lt.st
   ELSE 'unattributed' END AS channel,
  coalesce(o.attributed_source_type, lt.st) AS source_type,
  coalesce(o.attributed_source_id, lt.sid) AS source_id,
  CASE WHEN o.attributed_source_id IS NOT NULL THEN o.attributed_message_id ELSE lt.mid END
    AS message_id
FROM o LEFT JOIN lt ON lt.order_id = o.id
LEFT JOIN klaviyo_campaigns c ON o.attributed_source_type = 'campaign'
  AND c.id = o.attributed_source_id
LEFT JOIN klaviyo_flow_messages fm ON o.attributed_source_type = 'flow'
  AND fm.id = o.attributed_message_id
"""

REFUNDS = """
SELECT (e."timestamp" AT TIME ZONE %(tz)s)::date AS day, abs(coalesce(e.value, 0)) AS value,
  e.properties ->> 'OrderId' AS ref
FROM klaviyo_events e JOIN klaviyo_metrics m ON m.id = e.metric_id
WHERE m.name = 'Refunded Order'
"""

MESSAGE_EVENTS = """
SELECT (e."timestamp" AT TIME ZONE %(tz)s)::date AS day, m.name, e.attributed_source_type AS st,
  e.attributed_source_id AS sid, e.attributed_message_id AS mid,
  e.profile_id IS NOT NULL AND row_number() OVER (
    PARTITION BY e.metric_id, e.attributed_message_id, e.profile_id
    ORDER BY e."timestamp", e.id) = 1 AS first,
  coalesce(c.channel, fm.channel) AS catalog_channel
FROM klaviyo_events e JOIN klaviyo_metrics m ON m.id = e.metric_id
LEFT JOIN klaviyo_campaigns c ON e.attributed_source_type = 'campaign'
  AND c.id = e.attributed_source_id
LEFT JOIN klaviyo_flow_messages fm ON e.attributed_source_type = 'flow'
  AND fm.id = e.attributed_message_id
WHERE m.name IN ('Received Email', 'Opened Email', 'Clicked Email', 'Bounced Email',
  'Marked Email as Spam', 'Unsubscribed', 'Received SMS', 'Clicked SMS')
  AND e.attributed_message_id IS NOT NULL AND e.attributed_source_id IS NOT NULL
"""

FORMS = """
SELECT (e."timestamp" AT TIME ZONE %(tz)s)::date AS day, m.name,
  coalesce(e.properties ->> 'form_id', '') AS form_id
FROM klaviyo_events e JOIN klaviyo_metrics m ON m.id = e.metric_id
WHERE m.name IN ('Viewed Form', 'Submitted Form')
"""

_KIND = {
    "Received Email": "received",
    "Received SMS": "received",
    "Bounced Email": "bounced",
    "Opened Email": "opened",
    "Clicked Email": "clicked",
    "Clicked SMS": "clicked",
    "Unsubscribed": "unsubscribed",
    "Marked Email as Spam": "spam",
}
MESSAGE_COLUMNS = (
    "recipients",
    "delivered",
    "bounces",
    "opens",
    "unique_opens",
    "clicks",
    "unique_clicks",
    "unsubscribes",
    "spam_complaints",
)


@dataclass(frozen=True)
class Truth:
    """Everything the facts should say, computed independently."""

    orders: list[dict[str, Any]]
    refunds: list[dict[str, Any]]
    revenue: dict[tuple[date, str], dict[str, Any]]
    messages: dict[tuple[date, str, str, str], dict[str, Any]]
    forms: dict[tuple[date, str], tuple[int, int]]


def rows(conn: psycopg.Connection[Any], query: str, **params: Any) -> list[dict[str, Any]]:
    """Run a query and return its rows as dicts."""
    cur = conn.execute(query, params)  # type: ignore[call-overload]
    names = [d.name for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def compute(conninfo: str, tz: str, *, email_hours: int = 120, sms_hours: int = 24) -> Truth:
    """Compute the facts' expected content from raw events."""
    with psycopg.connect(conninfo) as conn:
        orders = rows(conn, ORDERS, tz=tz, email_hours=email_hours, sms_hours=sms_hours)
        refunds = rows(conn, REFUNDS, tz=tz)
        events = rows(conn, MESSAGE_EVENTS, tz=tz)
        forms_raw = rows(conn, FORMS, tz=tz)
    revenue: dict[tuple[date, str], dict[str, Any]] = defaultdict(
        lambda: {"revenue": Decimal(0), "refunds": Decimal(0), "orders": 0, "customers": set()}
    )
    channel_of_ref = {}
    for o in sorted(orders, key=lambda o: o["id"]):
        channel_of_ref.setdefault(o["ref"], o["channel"])
        r = revenue[(o["day"], o["channel"])]
        r["revenue"] += o["value"]
        r["orders"] += 1
        if o["profile_id"] is not None:
            r["customers"].add(o["profile_id"])
    for f in refunds:
        revenue[(f["day"], channel_of_ref.get(f["ref"], "unattributed"))]["refunds"] += f["value"]
    messages: dict[tuple[date, str, str, str], dict[str, Any]] = {}
    for e in events:
        key = (e["day"], e["st"], e["sid"], e["mid"])
        row = messages.setdefault(key, {c: 0 for c in MESSAGE_COLUMNS} | {"media": set()})
        row["media"].add(e["catalog_channel"] or ("sms" if "SMS" in e["name"] else "email"))
        kind = _KIND[e["name"]]
        first = bool(e["first"])
        if kind in ("received", "bounced") and first:
            row["recipients"] += 1
        if kind == "received" and first:
            row["delivered"] += 1
        if kind == "bounced" and first:
            row["bounces"] += 1
        if kind == "opened":
            row["opens"] += 1
            row["unique_opens"] += first
        if kind == "clicked":
            row["clicks"] += 1
            row["unique_clicks"] += first
        if kind == "unsubscribed" and first:
            row["unsubscribes"] += 1
        if kind == "spam" and first:
            row["spam_complaints"] += 1
    for (_, st, _, _), row in messages.items():
        medium = "sms" if "sms" in row.pop("media") else "email"
        row["channel"] = f"{medium}_{st}"
    forms: dict[tuple[date, str], tuple[int, int]] = {}
    for f in forms_raw:
        views, subs = forms.get((f["day"], f["form_id"]), (0, 0))
        if f["name"] == "Viewed Form":
            views += 1
        else:
            subs += 1
        forms[(f["day"], f["form_id"])] = (views, subs)
    return Truth(orders, refunds, dict(revenue), messages, forms)


def table(conninfo: str, query: str, **params: Any) -> list[dict[str, Any]]:
    """Return a query's rows (for reading the facts in tests)."""
    with psycopg.connect(conninfo) as conn:
        return rows(conn, query, **params)
