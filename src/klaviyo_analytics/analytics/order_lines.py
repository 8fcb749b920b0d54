"""Line items of Placed Orders (`fact_order_lines`), kept exact from the raw order events.

A line depends on its order event alone (its `Items`, local date and profile), so the sync's
after-events hook rewrites exactly the lines of the orders whose timestamps fall in the synced
range: the cost follows the touched range, never the whole history. `rebuild_order_lines`
recomputes every line (after a time zone change). Definitions: docs/analytics.md.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import LiteralString

from klaviyo_analytics.analytics.metric_names import metric_ids
from klaviyo_analytics.analytics.periods import zone
from klaviyo_analytics.db.pool import Conn

__all__ = ["rebuild_order_lines", "refresh_order_lines"]

logger = logging.getLogger(__name__)


def _number(field: LiteralString) -> LiteralString:
    # A JSON number, or a string that spells one; anything else is NULL (never an error).
    value = "i.item -> '" + field + "'"
    return (
        "CASE WHEN jsonb_typeof(" + value + ") = 'number' THEN (" + value + ")::text::numeric"
        " WHEN jsonb_typeof(" + value + ") = 'string' AND (" + value + " #>> '{}')"
        " ~ '^\\s*-?[0-9]+(\\.[0-9]+)?\\s*$' THEN trim(" + value + " #>> '{}')::numeric END"
    )


_QUANTITY: LiteralString = "coalesce(" + _number("Quantity") + ", 1)"
_INSERT: LiteralString = (
    'INSERT INTO fact_order_lines (order_id, "timestamp", line, date, profile_id, product_id,'
    " sku, product_name, brand, categories, quantity, item_price, row_total)"
    ' SELECT e.id, e."timestamp", i.n::integer, (e."timestamp" AT TIME ZONE %(tz)s)::date,'
    "  e.profile_id,"
    "  coalesce(i.item ->> 'ProductID', i.item ->> 'SKU', i.item ->> 'ProductName'),"
    "  i.item ->> 'SKU', i.item ->> 'ProductName',"
    "  coalesce(i.item ->> 'Brand', i.item ->> 'ProductBrand'),"
    "  CASE WHEN jsonb_typeof(i.item -> 'Categories') = 'array' THEN ARRAY("
    "   SELECT jsonb_array_elements_text(i.item -> 'Categories')) ELSE '{}'::text[] END,"
    "  " + _QUANTITY + ", " + _number("ItemPrice") + ","
    "  coalesce(" + _number("RowTotal") + ", " + _number("ItemPrice") + " * " + _QUANTITY + ", 0)"
    " FROM klaviyo_events e"
    " CROSS JOIN LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(e.properties -> 'Items')"
    "  = 'array' THEN e.properties -> 'Items' ELSE '[]'::jsonb END) WITH ORDINALITY AS i(item, n)"
    " WHERE e.metric_id = ANY(%(orders)s::text[])"
    '  AND e."timestamp" >= %(lo)s AND e."timestamp" <= %(hi)s'
    "  AND jsonb_typeof(i.item) = 'object'"
    "  AND coalesce(i.item ->> 'ProductID', i.item ->> 'SKU', i.item ->> 'ProductName')"
    "   IS NOT NULL"
)
_DELETE: LiteralString = (
    'DELETE FROM fact_order_lines WHERE "timestamp" >= %(lo)s AND "timestamp" <= %(hi)s'
)


async def refresh_order_lines(conn: Conn, lo: datetime, hi: datetime, timezone: str) -> None:
    """Rewrite the lines of every Placed Order with `lo <= timestamp <= hi`.

    This is an after-events hook of the sync (its signature); it runs in the caller's
    transaction. Raises InvalidParameterError for an unknown zone.
    """
    zone(timezone)
    ids = await metric_ids(conn)
    params = {"lo": lo, "hi": hi, "tz": timezone, "orders": ids.placed_order}
    await conn.execute(_DELETE, params)
    cur = await conn.execute(_INSERT, params)
    logger.debug("refreshed order lines of %s .. %s: %d rows", lo, hi, max(cur.rowcount, 0))


async def rebuild_order_lines(conn: Conn, timezone: str) -> int:
    """Recompute every order line from scratch; return the number of lines."""
    zone(timezone)
    ids = await metric_ids(conn)
    await conn.execute("TRUNCATE fact_order_lines")
    params = {
        "lo": datetime(1, 1, 2, tzinfo=UTC),
        "hi": datetime(9999, 12, 30, tzinfo=UTC),
        "tz": timezone,
        "orders": ids.placed_order,
    }
    cur = await conn.execute(_INSERT, params)
    return max(cur.rowcount, 0)
