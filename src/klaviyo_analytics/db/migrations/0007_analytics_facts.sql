-- Finer-grained facts behind the daily facts of 0003, and the indexes their refresh needs.
-- Definitions: docs/analytics.md. Every row is recomputed from raw events for whole local
-- days of the store (delete + insert), so the tables are exact, never incremented in place.

-- One row per Placed Order with its final attribution: Klaviyo's own, else the last touch.
-- Range figures that are not additive over days (unique customers, unique buyers) are
-- counted from here.
CREATE TABLE fact_orders (
    order_id     text NOT NULL,
    "timestamp"  timestamptz NOT NULL,
    date         date NOT NULL,
    profile_id   text,
    value        numeric NOT NULL DEFAULT 0,
    -- The order's `$event_id`: what a Refunded Order's `OrderId` names.
    order_ref    text,
    channel      text NOT NULL,
    source_type  text CHECK (source_type IN ('campaign', 'flow')),
    source_id    text,
    message_id   text,
    attribution  text NOT NULL CHECK (attribution IN ('klaviyo', 'last_touch', 'none')),
    PRIMARY KEY (order_id, "timestamp")
);
CREATE INDEX fact_orders_date_idx ON fact_orders (date) INCLUDE (profile_id, channel, value);
CREATE INDEX fact_orders_ref_idx ON fact_orders (order_ref) WHERE order_ref IS NOT NULL;
CREATE INDEX fact_orders_source_idx ON fact_orders (source_type, source_id, date);

-- Message engagement per local day and message. "Unique" figures count a (message, profile)
-- pair once, on the day of its first event of that kind, so they add up over days.
CREATE TABLE fact_message_engagement (
    date             date NOT NULL,
    channel          text NOT NULL,
    source_type      text NOT NULL CHECK (source_type IN ('campaign', 'flow')),
    source_id        text NOT NULL,
    message_id       text NOT NULL,
    recipients       bigint NOT NULL DEFAULT 0,
    delivered        bigint NOT NULL DEFAULT 0,
    bounces          bigint NOT NULL DEFAULT 0,
    opens            bigint NOT NULL DEFAULT 0,
    unique_opens     bigint NOT NULL DEFAULT 0,
    clicks           bigint NOT NULL DEFAULT 0,
    unique_clicks    bigint NOT NULL DEFAULT 0,
    unsubscribes     bigint NOT NULL DEFAULT 0,
    spam_complaints  bigint NOT NULL DEFAULT 0,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (date, source_type, source_id, message_id)
);
CREATE INDEX fact_message_engagement_source_idx
    ON fact_message_engagement (source_type, source_id, date);

-- Signup forms per local day: views and submissions (event counts).
CREATE TABLE fact_forms (
    date         date NOT NULL,
    form_id      text NOT NULL,
    views        bigint NOT NULL DEFAULT 0,
    submissions  bigint NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (date, form_id)
);

-- First-touch and last-touch lookups: one index probe per (profile, metric, message).
CREATE INDEX klaviyo_events_message_touch_idx
    ON klaviyo_events (profile_id, metric_id, attributed_message_id, "timestamp")
    WHERE attributed_message_id IS NOT NULL;
-- New profiles in a range (the overview's subscribers when no Subscribed metric exists).
CREATE INDEX klaviyo_profiles_created_idx ON klaviyo_profiles (created) WHERE NOT is_stub;
