-- Anomalous days of a metric's daily count or sum, as flagged by analytics/anomalies.py
-- (STL residuals scored with a robust z-score). One row per metric, measure and local date:
-- a re-detection upserts, and days of the re-examined range that are no longer flagged go.
CREATE TABLE analytics_anomalies (
    metric_id    text NOT NULL REFERENCES klaviyo_metrics (id) ON DELETE CASCADE,
    measure      text NOT NULL CHECK (measure IN ('count', 'sum')),
    date         date NOT NULL,
    observed     numeric NOT NULL,
    expected     numeric NOT NULL,
    score        double precision NOT NULL,
    direction    text NOT NULL CHECK (direction IN ('spike', 'drop')),
    threshold    double precision NOT NULL,
    method       text NOT NULL DEFAULT 'stl_robust_z',
    detected_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (metric_id, measure, date)
);
CREATE INDEX analytics_anomalies_date_idx ON analytics_anomalies (date DESC);
