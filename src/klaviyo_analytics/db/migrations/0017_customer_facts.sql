-- Per-customer and per-product facts (issue 19): cohorts, RFM and products read these instead
-- of recomputing every customer's history on each request. `analytics.customer_facts` keeps
-- them exact after every refresh, for the profiles the refresh touched; `analytics rebuild`
-- recomputes them. Definitions and costs: docs/analytics.md. Plain tables on both PostgreSQL
-- and TimescaleDB (none is time-partitioned).

-- On each order: the same profile's next order in (timestamp, order_id) order ("bought
-- next"), and in (date, timestamp, order_id) order its running order count and revenue and
-- the next order's date. A customer's RFM state on any day D is then one row: its order with
-- date <= D whose next order is after D (or absent).
ALTER TABLE fact_orders
    ADD COLUMN next_order_id text,
    ADD COLUMN next_order_ts timestamptz,
    ADD COLUMN orders_to_date integer,
    ADD COLUMN revenue_to_date numeric,
    ADD COLUMN next_order_date date;
CREATE INDEX fact_orders_rfm_idx ON fact_orders (next_order_date, date)
    INCLUDE (profile_id, orders_to_date, revenue_to_date) WHERE profile_id IS NOT NULL;

-- One row per customer and calendar month with an order: the cohort (the customer's first
-- ever order date, on every row) and the month's orders and revenue.
CREATE TABLE fact_customer_months (
    profile_id          text NOT NULL,
    month               date NOT NULL,
    first_order_date    date NOT NULL,
    orders              integer NOT NULL,
    revenue             numeric NOT NULL,
    attributed_revenue  numeric NOT NULL,
    PRIMARY KEY (profile_id, month)
);
CREATE INDEX fact_customer_months_cohort_idx ON fact_customer_months (first_order_date)
    INCLUDE (month, orders, revenue, attributed_revenue);

-- One row per (order with a profile, product in it): the local dates of the same profile's
-- two previous orders of that product, in (date, timestamp, order_id) order. A profile is a
-- customer of the product in [a, b] on its row whose previous date is before a, and a repeat
-- customer on its row whose previous date is in the range and the one before it is not.
CREATE TABLE fact_product_orders (
    order_id     text NOT NULL,
    "timestamp"  timestamptz NOT NULL,
    product_id   text NOT NULL,
    date         date NOT NULL,
    profile_id   text NOT NULL,
    prev_date    date,
    prev2_date   date,
    PRIMARY KEY (order_id, "timestamp", product_id)
);
CREATE INDEX fact_product_orders_date_idx ON fact_product_orders (date)
    INCLUDE (product_id, prev_date, prev2_date);
CREATE INDEX fact_product_orders_profile_idx ON fact_product_orders (profile_id);

-- Per local date and product: distinct orders, units, revenue (additive over days), and the
-- largest SKU and name seen (a max of maxes is the range's max).
CREATE TABLE fact_product_days (
    date          date NOT NULL,
    product_id    text NOT NULL,
    orders        bigint NOT NULL,
    units         numeric NOT NULL,
    revenue       numeric NOT NULL,
    sku           text,
    product_name  text,
    PRIMARY KEY (date, product_id)
);

-- Per local date, product and next product: the orders of that date with the product whose
-- next order (same profile, (timestamp, order_id) order) has the next product.
CREATE TABLE fact_product_next (
    date             date NOT NULL,
    product_id       text NOT NULL,
    next_product_id  text NOT NULL,
    orders           bigint NOT NULL,
    PRIMARY KEY (date, product_id, next_product_id)
);
-- A product's latest name.
CREATE INDEX fact_order_lines_product_idx ON fact_order_lines (product_id, "timestamp")
    INCLUDE (product_name);

-- Fill them for an existing database (the same statements as analytics.customer_facts).
UPDATE fact_orders f
SET next_order_id = s.next_order_id, next_order_ts = s.next_order_ts,
    orders_to_date = s.orders_to_date, revenue_to_date = s.revenue_to_date,
    next_order_date = s.next_order_date
FROM (
    SELECT order_id, "timestamp",
        lead(order_id) OVER t AS next_order_id, lead("timestamp") OVER t AS next_order_ts,
        (count(*) OVER d)::integer AS orders_to_date, sum(value) OVER d AS revenue_to_date,
        lead(date) OVER (PARTITION BY profile_id ORDER BY date, "timestamp", order_id)
            AS next_order_date
    FROM fact_orders
    WHERE profile_id IS NOT NULL
    WINDOW t AS (PARTITION BY profile_id ORDER BY "timestamp", order_id),
        d AS (PARTITION BY profile_id ORDER BY date, "timestamp", order_id
              ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
) s
WHERE f.order_id = s.order_id AND f."timestamp" = s."timestamp";

INSERT INTO fact_customer_months (profile_id, month, first_order_date, orders, revenue,
                                  attributed_revenue)
SELECT profile_id, date_trunc('month', date)::date,
    min(min(date)) OVER (PARTITION BY profile_id), count(*), sum(value),
    coalesce(sum(value) FILTER (WHERE channel <> 'unattributed'), 0)
FROM fact_orders
WHERE profile_id IS NOT NULL
GROUP BY profile_id, date_trunc('month', date)::date;

INSERT INTO fact_product_orders (order_id, "timestamp", product_id, date, profile_id,
                                 prev_date, prev2_date)
SELECT order_id, "timestamp", product_id, date, profile_id,
    lag(date) OVER w, lag(date, 2) OVER w
FROM (SELECT DISTINCT order_id, "timestamp", product_id, date, profile_id
      FROM fact_order_lines WHERE profile_id IS NOT NULL) l
WINDOW w AS (PARTITION BY profile_id, product_id ORDER BY date, "timestamp", order_id);

INSERT INTO fact_product_days (date, product_id, orders, units, revenue, sku, product_name)
SELECT date, product_id, count(DISTINCT order_id), sum(quantity), sum(row_total), max(sku),
    max(product_name)
FROM fact_order_lines
GROUP BY date, product_id;

INSERT INTO fact_product_next (date, product_id, next_product_id, orders)
SELECT l.date, l.product_id, n.product_id, count(DISTINCT l.order_id)
FROM fact_order_lines l
JOIN fact_orders o ON o.order_id = l.order_id AND o."timestamp" = l."timestamp"
JOIN fact_order_lines n ON n.order_id = o.next_order_id AND n."timestamp" = o.next_order_ts
GROUP BY l.date, l.product_id, n.product_id;
