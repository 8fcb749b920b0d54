-- Customer analytics (issue 19): order lines for product analytics, and stored CLV predictions.

-- Line items of every Placed Order (its `Items` property, Shopify's shape), one row per line,
-- for product analytics. A line belongs to its order's local date and profile; it is rebuilt
-- from the order event alone, so a refresh of a time range rewrites exactly the lines of the
-- orders in it (`analytics.order_lines`). Money is NUMERIC; Quantity may be fractional.
CREATE TABLE fact_order_lines (
    order_id      text NOT NULL,
    "timestamp"   timestamptz NOT NULL,
    line          integer NOT NULL,
    date          date NOT NULL,
    profile_id    text,
    product_id    text NOT NULL,
    sku           text,
    product_name  text,
    brand         text,
    categories    text[] NOT NULL DEFAULT '{}',
    quantity      numeric NOT NULL,
    item_price    numeric,
    row_total     numeric NOT NULL,
    PRIMARY KEY (order_id, "timestamp", line)
);
CREATE INDEX fact_order_lines_date_idx ON fact_order_lines (date)
    INCLUDE (product_id, profile_id, quantity, row_total);
CREATE INDEX fact_order_lines_profile_idx ON fact_order_lines (profile_id, "timestamp", order_id)
    WHERE profile_id IS NOT NULL;
-- The RFM and cohort reads walk one profile's orders.
CREATE INDEX IF NOT EXISTS fact_orders_profile_date_idx ON fact_orders (profile_id, date)
    INCLUDE (value, channel) WHERE profile_id IS NOT NULL;

-- Predicted CLV per customer of a stored CLV model (`forecast_models` series 'customers:clv',
-- fitted by the scheduler's `clv` job; `analytics.clv`). Historic CLV is not stored: it is
-- read exact from `fact_orders` when asked.
CREATE TABLE customer_clv (
    model_id               bigint NOT NULL REFERENCES forecast_models (id) ON DELETE CASCADE,
    profile_id             text NOT NULL,
    predicted_orders       numeric NOT NULL,
    predicted_orders_low   integer NOT NULL,
    predicted_orders_high  integer NOT NULL,
    predicted_clv          numeric NOT NULL,
    predicted_clv_low      numeric NOT NULL,
    predicted_clv_high     numeric NOT NULL,
    p_alive                numeric NOT NULL,
    churn_probability      numeric NOT NULL,
    expected_order_value   numeric NOT NULL,
    expected_next_order    date,
    PRIMARY KEY (model_id, profile_id)
);
CREATE INDEX customer_clv_value_idx ON customer_clv (model_id, predicted_clv DESC, profile_id);
