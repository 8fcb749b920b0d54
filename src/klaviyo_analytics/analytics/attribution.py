"""Attribution and the daily facts as SQL: one statement per fact table, from raw events.

Orders are attributed to a message (Klaviyo's own attribution, else the last touch within the
channel's window) and engagement to the message it names.

Every statement works on a set of whole local dates of the store, given as `%(dates)s` (a
date[]) with `%(first)s`/`%(last)s` its first and last date, with `%(lo)s`/`%(hi)s` the UTC
instants around them and `%(tz)s` the store's zone. The bounds are plain values so that the
planner can skip whole partitions and TimescaleDB chunks before running. Every statement reads
only the events in [lo, hi) or index probes keyed by one profile, pair or order, so its cost
follows the dates it is given, not the size of the history. The definitions they implement are
in docs/analytics.md.
"""

from __future__ import annotations

from typing import LiteralString

# The local date of an event, and the filter "the event falls on one of the dates".
LOCAL_DATE: LiteralString = '(e."timestamp" AT TIME ZONE %(tz)s)::date'
ON_DATES: LiteralString = (
    'e."timestamp" >= %(lo)s AND e."timestamp" < %(hi)s'
    ' AND (e."timestamp" AT TIME ZONE %(tz)s)::date = ANY(%(dates)s::date[])'
)


def fact_dates(column: LiteralString = "date") -> LiteralString:
    """Return the filter "`column` is one of the dates", with the bounds the planner prunes by."""
    return (
        column + " >= %(first)s AND " + column + " <= %(last)s AND "
        + column + " = ANY(%(dates)s::date[])"
    )  # fmt: skip


FACT_DATES: LiteralString = fact_dates()

# "email_" or "sms_" by the message's channel: the campaign's, else the flow message's, else
# what the event itself says; anything that is not SMS counts as email.
_MEDIUM: LiteralString = "CASE WHEN {} = 'sms' THEN 'sms' ELSE 'email' END"

# Every daily fact table, in the order they are recomputed.
FACT_TABLES: tuple[LiteralString, ...] = (
    "fact_orders",
    "fact_message_engagement",
    "fact_forms",
    "fact_conversions",
    "fact_revenue",
    "fact_engagement",
)
# The orders of the dates go first, and say whose they were: the customer facts of those
# profiles are recomputed even if the orders moved to another profile or date.
DELETE_ORDERS: LiteralString = (
    "WITH gone AS (DELETE FROM fact_orders WHERE " + FACT_DATES + " RETURNING profile_id)"
    " SELECT DISTINCT profile_id FROM gone WHERE profile_id IS NOT NULL"
)
DELETE_FACTS: tuple[LiteralString, ...] = tuple(
    "DELETE FROM " + table + " WHERE " + FACT_DATES for table in FACT_TABLES[1:]
)

# Orders: Klaviyo's attribution when it gave one, else the last touch of the same profile: the
# newest Opened/Clicked Email within the email window, or Clicked SMS within the SMS window,
# strictly before the order, that names its message.
INSERT_ORDERS: LiteralString = (
    'INSERT INTO fact_orders (order_id, "timestamp", date, profile_id, value, order_ref,'
    " channel, source_type, source_id, message_id, attribution)"
    ' SELECT o.id, o."timestamp", o.date, o.profile_id, o.value, o.order_ref,'
    " CASE WHEN o.source_id IS NULL THEN 'unattributed' ELSE "
    + _MEDIUM.format(
        "coalesce(o.touch_medium, c.channel, fm.channel, o.properties ->> '$attributed_channel',"
        " o.properties -> '$attribution' ->> '$attributed_channel')"
    )
    + " || '_' || o.source_type END,"
    " o.source_type, o.source_id, o.message_id, o.attribution"
    " FROM ("
    '  SELECT e.id, e."timestamp", ' + LOCAL_DATE + " AS date, e.profile_id,"
    "   coalesce(e.value, 0) AS value, e.properties, e.properties ->> '$event_id' AS order_ref,"
    "   CASE WHEN e.attributed_source_id IS NOT NULL THEN e.attributed_source_type"
    "        ELSE lt.source_type END AS source_type,"
    "   coalesce(e.attributed_source_id, lt.source_id) AS source_id,"
    "   CASE WHEN e.attributed_source_id IS NOT NULL THEN e.attributed_message_id"
    "        ELSE lt.message_id END AS message_id,"
    "   lt.medium AS touch_medium,"
    "   CASE WHEN e.attributed_source_id IS NOT NULL THEN 'klaviyo'"
    "        WHEN lt.source_id IS NOT NULL THEN 'last_touch' ELSE 'none' END AS attribution"
    "  FROM klaviyo_events e"
    "  LEFT JOIN LATERAL ("
    "   SELECT t.attributed_source_type AS source_type, t.attributed_source_id AS source_id,"
    "    t.attributed_message_id AS message_id,"
    "    CASE WHEN t.metric_id = ANY(%(sms_touch)s::text[]) THEN 'sms' ELSE 'email' END AS medium"
    "   FROM klaviyo_events t"
    "   WHERE e.attributed_source_id IS NULL AND t.profile_id = e.profile_id"
    "    AND t.attributed_source_id IS NOT NULL AND t.attributed_source_type IS NOT NULL"
    "    AND t.attributed_message_id IS NOT NULL"
    '    AND t."timestamp" < e."timestamp"'
    '    AND t."timestamp" >= e."timestamp" - greatest(%(email_window)s, %(sms_window)s)'
    "    AND ((t.metric_id = ANY(%(email_touch)s::text[])"
    '          AND t."timestamp" >= e."timestamp" - %(email_window)s)'
    "      OR (t.metric_id = ANY(%(sms_touch)s::text[])"
    '          AND t."timestamp" >= e."timestamp" - %(sms_window)s))'
    '   ORDER BY t."timestamp" DESC, t.id DESC LIMIT 1'
    "  ) lt ON true"
    "  WHERE e.metric_id = ANY(%(orders)s::text[]) AND " + ON_DATES + " ) o"
    " LEFT JOIN klaviyo_campaigns c ON o.source_type = 'campaign' AND c.id = o.source_id"
    " LEFT JOIN klaviyo_flow_messages fm ON o.source_type = 'flow' AND fm.id = o.message_id"
)

# Message engagement: a (message, profile) pair is unique on the day of its first event of a
# metric (ties broken by event id); events without a profile count, never as unique.
# "First" is decided in two steps so that no event probes the whole history: a window over the
# events of [lo, hi) finds each pair's first event there, and only that event looks for an
# earlier one of its pair before lo (one index probe per pair, on chunks before lo only).
INSERT_MESSAGE_ENGAGEMENT: LiteralString = (
    "INSERT INTO fact_message_engagement (date, channel, source_type, source_id, message_id,"
    " recipients, delivered, bounces, opens, unique_opens, clicks, unique_clicks, unsubscribes,"
    " spam_complaints)"
    " SELECT x.date, "
    + _MEDIUM.format(
        "coalesce(min(c.channel), min(fm.channel),"
        " CASE WHEN bool_or(x.medium = 'sms') THEN 'sms' END)"
    )
    + " || '_' || x.source_type, x.source_type, x.source_id, x.message_id,"
    " count(*) FILTER (WHERE x.kind IN ('received', 'bounced') AND x.first),"
    " count(*) FILTER (WHERE x.kind = 'received' AND x.first),"
    " count(*) FILTER (WHERE x.kind = 'bounced' AND x.first),"
    " count(*) FILTER (WHERE x.kind = 'opened'),"
    " count(*) FILTER (WHERE x.kind = 'opened' AND x.first),"
    " count(*) FILTER (WHERE x.kind = 'clicked'),"
    " count(*) FILTER (WHERE x.kind = 'clicked' AND x.first),"
    " count(*) FILTER (WHERE x.kind = 'unsubscribed' AND x.first),"
    " count(*) FILTER (WHERE x.kind = 'spam' AND x.first)"
    " FROM ("
    "  SELECT y.date, y.source_type, y.source_id, y.message_id, y.kind, y.medium,"
    "   CASE WHEN y.first_here THEN NOT EXISTS ("
    "    SELECT 1 FROM klaviyo_events p WHERE p.profile_id = y.profile_id"
    "     AND p.metric_id = y.metric_id AND p.attributed_message_id = y.message_id"
    '     AND p."timestamp" < %(lo)s) ELSE false END AS first'
    "  FROM ("
    "   SELECT " + LOCAL_DATE + " AS date, e.attributed_source_type AS source_type,"
    "    e.attributed_source_id AS source_id, e.attributed_message_id AS message_id,"
    "    e.metric_id, e.profile_id,"
    "    CASE WHEN e.metric_id = ANY(%(received)s::text[]) THEN 'received'"
    "         WHEN e.metric_id = ANY(%(bounced)s::text[]) THEN 'bounced'"
    "         WHEN e.metric_id = ANY(%(opened)s::text[]) THEN 'opened'"
    "         WHEN e.metric_id = ANY(%(clicked)s::text[]) THEN 'clicked'"
    "         WHEN e.metric_id = ANY(%(unsubscribed)s::text[]) THEN 'unsubscribed'"
    "         ELSE 'spam' END AS kind,"
    "    CASE WHEN e.metric_id = ANY(%(sms)s::text[]) THEN 'sms' ELSE 'email' END AS medium,"
    "    e.profile_id IS NOT NULL AND row_number() OVER (PARTITION BY e.profile_id,"
    '     e.metric_id, e.attributed_message_id ORDER BY e."timestamp", e.id) = 1 AS first_here'
    "   FROM klaviyo_events e"
    "   WHERE e.metric_id = ANY(%(engagement)s::text[]) AND e.attributed_message_id IS NOT NULL"
    '    AND e."timestamp" >= %(lo)s AND e."timestamp" < %(hi)s) y'
    "  WHERE y.source_id IS NOT NULL AND y.source_type IN ('campaign', 'flow')"
    "   AND y.date = ANY(%(dates)s::date[])) x"
    " LEFT JOIN klaviyo_campaigns c ON x.source_type = 'campaign' AND c.id = x.source_id"
    " LEFT JOIN klaviyo_flow_messages fm ON x.source_type = 'flow' AND fm.id = x.message_id"
    " GROUP BY x.date, x.source_type, x.source_id, x.message_id"
)

INSERT_FORMS: LiteralString = (
    "INSERT INTO fact_forms (date, form_id, views, submissions)"
    " SELECT " + LOCAL_DATE + ", coalesce(e.properties ->> 'form_id', ''),"
    " count(*) FILTER (WHERE e.metric_id = ANY(%(viewed_form)s::text[])),"
    " count(*) FILTER (WHERE e.metric_id = ANY(%(submitted_form)s::text[]))"
    " FROM klaviyo_events e"
    " WHERE e.metric_id = ANY(%(viewed_form)s::text[] || %(submitted_form)s::text[]) AND "
    + ON_DATES
    + " GROUP BY 1, 2"
)

INSERT_CONVERSIONS: LiteralString = (
    "INSERT INTO fact_conversions (date, source_type, source_id, message_id, conversions, revenue)"
    " SELECT date, source_type, source_id, coalesce(message_id, ''), count(*), sum(value)"
    " FROM fact_orders WHERE source_id IS NOT NULL AND " + FACT_DATES + " GROUP BY 1, 2, 3, 4"
)

# Revenue per day and channel, and its split by attribution rule (Klaviyo's, our last touch);
# a refund belongs to the channel of the order it refunds (its `OrderId` is the order's
# `$event_id`), or to "unattributed" when that order is unknown.
INSERT_REVENUE: LiteralString = (
    "INSERT INTO fact_revenue (date, channel, revenue, refunds, net_revenue, orders,"
    " unique_customers, klaviyo_revenue, last_touch_revenue)"
    " WITH sales AS ("
    "  SELECT date, channel, sum(value) AS revenue, count(*) AS orders,"
    "   count(DISTINCT profile_id) AS customers,"
    "   coalesce(sum(value) FILTER (WHERE attribution = 'klaviyo'), 0) AS klaviyo,"
    "   coalesce(sum(value) FILTER (WHERE attribution = 'last_touch'), 0) AS last_touch"
    "  FROM fact_orders WHERE " + FACT_DATES + " GROUP BY 1, 2),"
    " refunds AS ("
    "  SELECT " + LOCAL_DATE + " AS date, coalesce(fo.channel, 'unattributed') AS channel,"
    "   sum(abs(coalesce(e.value, 0))) AS refunds"
    "  FROM klaviyo_events e"
    "  LEFT JOIN LATERAL (SELECT f.channel FROM fact_orders f"
    "   WHERE f.order_ref = e.properties ->> 'OrderId'"
    '   ORDER BY f."timestamp", f.order_id LIMIT 1) fo ON true'
    "  WHERE e.metric_id = ANY(%(refunded)s::text[]) AND " + ON_DATES + " GROUP BY 1, 2)"
    " SELECT coalesce(s.date, r.date), coalesce(s.channel, r.channel), coalesce(s.revenue, 0),"
    " coalesce(r.refunds, 0), coalesce(s.revenue, 0) - coalesce(r.refunds, 0),"
    " coalesce(s.orders, 0), coalesce(s.customers, 0), coalesce(s.klaviyo, 0),"
    " coalesce(s.last_touch, 0)"
    " FROM sales s FULL JOIN refunds r ON s.date = r.date AND s.channel = r.channel"
)

# Channel engagement per day, from the message facts (sums) and the orders (buyers).
INSERT_ENGAGEMENT: LiteralString = (
    "INSERT INTO fact_engagement (date, channel, metric_type, count, unique_count, rate)"
    " SELECT m.date, m.channel, t.metric_type, t.n, t.u, t.rate"
    " FROM (SELECT date, channel, sum(recipients) AS r, sum(delivered) AS d, sum(bounces) AS b,"
    "  sum(opens) AS o, sum(unique_opens) AS uo, sum(clicks) AS c, sum(unique_clicks) AS uc,"
    "  sum(unsubscribes) AS un, sum(spam_complaints) AS sp"
    "  FROM fact_message_engagement WHERE " + FACT_DATES + " GROUP BY 1, 2) m"
    " CROSS JOIN LATERAL (VALUES"
    "  ('recipients', m.r, m.r, NULL::numeric),"
    "  ('delivered', m.d, m.d, m.d / nullif(m.r, 0)),"
    "  ('bounced', m.b, m.b, m.b / nullif(m.r, 0)),"
    "  ('opened', m.o, m.uo, m.uo / nullif(m.d, 0)),"
    "  ('clicked', m.c, m.uc, m.uc / nullif(m.d, 0)),"
    "  ('unsubscribed', m.un, m.un, m.un / nullif(m.d, 0)),"
    "  ('spam_complaint', m.sp, m.sp, m.sp / nullif(m.d, 0))"
    " ) AS t(metric_type, n, u, rate)"
)
INSERT_CONVERTED: LiteralString = (
    "INSERT INTO fact_engagement (date, channel, metric_type, count, unique_count, rate)"
    " SELECT o.date, o.channel, 'converted', count(*), count(DISTINCT o.profile_id),"
    " count(DISTINCT o.profile_id)::numeric / nullif(min(d.count), 0)"
    " FROM fact_orders o LEFT JOIN fact_engagement d ON d.date = o.date"
    "  AND d.channel = o.channel AND d.metric_type = 'delivered'"
    " WHERE o.source_id IS NOT NULL AND " + fact_dates("o.date") + " GROUP BY o.date, o.channel"
)

# Dates whose facts change when events in [%(from)s, %(to)s] change, beyond the dates of those
# events: the first later event of each (message, profile, metric) pair may lose its "first".
# Only that one: the pair's later events were not first before either. One probe per pair.
LATER_FIRST_TOUCH_DATES: LiteralString = (
    'SELECT DISTINCT (l."timestamp" AT TIME ZONE %(tz)s)::date AS date'
    " FROM (SELECT DISTINCT e.profile_id, e.metric_id, e.attributed_message_id"
    "  FROM klaviyo_events e"
    "  WHERE e.metric_id = ANY(%(engagement)s::text[]) AND e.attributed_message_id IS NOT NULL"
    "   AND e.profile_id IS NOT NULL"
    '   AND e."timestamp" >= %(from)s AND e."timestamp" <= %(to)s) e'
    ' CROSS JOIN LATERAL (SELECT l."timestamp" FROM klaviyo_events l'
    "  WHERE l.profile_id = e.profile_id AND l.metric_id = e.metric_id"
    '   AND l.attributed_message_id = e.attributed_message_id AND l."timestamp" > %(to)s'
    '  ORDER BY l."timestamp" LIMIT 1) l'
)
# Whether any event lies after %(after)s. Only an event after the reach of a refresh can be a
# later first touch on a date the refresh does not recompute anyway: a backfill or an hourly
# sync, which end at the newest event, need not probe every pair (1 s at 280 k events).
EVENTS_AFTER: LiteralString = (
    'SELECT EXISTS (SELECT 1 FROM klaviyo_events WHERE "timestamp" > %(after)s) AS later'
)
# ... and refunds of orders on the recomputed dates move with their order's channel.
REFUND_DATES: LiteralString = (
    'SELECT DISTINCT (e."timestamp" AT TIME ZONE %(tz)s)::date AS date'
    " FROM klaviyo_events e JOIN fact_orders f ON f.order_ref = e.properties ->> 'OrderId'"
    ' WHERE e.metric_id = ANY(%(refunded)s::text[]) AND e."timestamp" >= %(lo)s'
    "  AND " + fact_dates("f.date")
)
EVENT_SPAN: LiteralString = (
    'SELECT min("timestamp") AS first, max("timestamp") AS last FROM klaviyo_events'
)
