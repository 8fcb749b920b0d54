-- Events are time-partitioned (a hypertable when TimescaleDB is present), so the time column
-- is part of every unique key: (id, timestamp).
CREATE TABLE klaviyo_events (
    id                      text NOT NULL,
    "timestamp"             timestamptz NOT NULL,
    metric_id               text NOT NULL REFERENCES klaviyo_metrics (id),
    -- Klaviyo events may have no profile; an unknown profile gets a stub row first.
    profile_id              text REFERENCES klaviyo_profiles (id),
    value                   numeric,
    uuid                    text,
    properties              jsonb NOT NULL DEFAULT '{}'::jsonb,
    attributed_source_type  text CHECK (attributed_source_type IN ('campaign', 'flow')),
    attributed_source_id    text,
    attributed_message_id   text,
    synced_at               timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, "timestamp")
);
CREATE INDEX klaviyo_events_metric_time_idx
    ON klaviyo_events (metric_id, "timestamp" DESC) INCLUDE (value);
CREATE INDEX klaviyo_events_profile_time_idx
    ON klaviyo_events (profile_id, "timestamp" DESC) WHERE profile_id IS NOT NULL;
CREATE INDEX klaviyo_events_time_brin_idx ON klaviyo_events USING brin ("timestamp");
CREATE INDEX klaviyo_events_properties_idx ON klaviyo_events USING gin (properties jsonb_path_ops);
CREATE INDEX klaviyo_events_positive_value_idx
    ON klaviyo_events (metric_id, "timestamp") WHERE value > 0;
-- The original design's "recent rows" index had now() in its predicate, which PostgreSQL
-- refuses (predicates must be immutable); a plain descending time index serves instead.
CREATE INDEX klaviyo_events_recent_idx ON klaviyo_events ("timestamp" DESC);
CREATE INDEX klaviyo_events_attribution_idx
    ON klaviyo_events (attributed_source_type, attributed_source_id, "timestamp")
    WHERE attributed_source_id IS NOT NULL;

-- Exact pre-aggregates per metric and bucket; buckets start at the store's local midnight
-- (or hour, or ISO week) expressed as timestamptz.
CREATE TABLE klaviyo_aggregated_metrics (
    metric_id     text NOT NULL REFERENCES klaviyo_metrics (id),
    bucket_size   text NOT NULL CHECK (bucket_size IN ('hour', 'day', 'week')),
    bucket_start  timestamptz NOT NULL,
    count         bigint NOT NULL,
    sum_value     numeric NOT NULL DEFAULT 0,
    min_value     numeric,
    max_value     numeric,
    avg_value     numeric,
    unique_profiles bigint NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (metric_id, bucket_size, bucket_start)
);
CREATE INDEX klaviyo_aggregated_metrics_bucket_idx
    ON klaviyo_aggregated_metrics (bucket_size, bucket_start DESC);

-- Raw API pages, archived when configured; retention applies.
CREATE TABLE raw_api_responses (
    id          bigint GENERATED ALWAYS AS IDENTITY,
    fetched_at  timestamptz NOT NULL DEFAULT now(),
    endpoint    text NOT NULL,
    url         text NOT NULL,
    status      integer NOT NULL,
    body        jsonb NOT NULL,
    PRIMARY KEY (id, fetched_at)
);
CREATE INDEX raw_api_responses_endpoint_idx ON raw_api_responses (endpoint, fetched_at DESC);
