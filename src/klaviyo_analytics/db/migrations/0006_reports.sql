-- Klaviyo's own performance figures from the Reporting API (campaign and flow values and
-- series), kept as returned so they can be compared with our figures from raw events.
CREATE TABLE klaviyo_reports (
    report_type  text NOT NULL,
    timeframe    text NOT NULL,
    source_id    text NOT NULL,
    message_id   text NOT NULL DEFAULT '',
    channel      text,
    statistics   jsonb NOT NULL,
    date_times   jsonb,
    fetched_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (report_type, timeframe, source_id, message_id)
);
