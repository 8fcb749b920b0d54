-- Distinct customers (and attributed buyers) of any date range without a per-profile pass:
-- each order carries the local date of the same profile's previous order (and of its
-- previous attributed order), in (timestamp, order_id) order. A profile is counted once in
-- [a, b]: on its first order there, the one whose previous order is before a (or absent).
-- `analytics.facts` keeps both columns exact after every refresh.
ALTER TABLE fact_orders
    ADD COLUMN prev_order_date date,
    ADD COLUMN prev_buyer_date date;

-- The range count reads only the date index (an index-only scan).
DROP INDEX fact_orders_date_idx;
CREATE INDEX fact_orders_date_idx ON fact_orders (date)
    INCLUDE (profile_id, channel, value, prev_order_date, prev_buyer_date);
-- The refresh recomputes the predecessors of one profile's orders at a time.
CREATE INDEX fact_orders_profile_idx ON fact_orders (profile_id, "timestamp", order_id)
    WHERE profile_id IS NOT NULL;

UPDATE fact_orders f
SET prev_order_date = s.prev_order_date, prev_buyer_date = s.prev_buyer_date
FROM (
    SELECT order_id, "timestamp",
        max(date) OVER w AS prev_order_date,
        max(date) FILTER (WHERE channel <> 'unattributed') OVER w AS prev_buyer_date
    FROM fact_orders
    WHERE profile_id IS NOT NULL
    WINDOW w AS (PARTITION BY profile_id ORDER BY "timestamp", order_id
                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
) s
WHERE f.order_id = s.order_id AND f."timestamp" = s."timestamp";
