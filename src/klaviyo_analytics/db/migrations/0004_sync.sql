-- Per-stream incremental state. A stream may be split into partitions (an event backfill's
-- time windows), each checkpointed on its own; partition '' is the stream as a whole.
CREATE TABLE sync_state (
    stream        text NOT NULL,
    partition     text NOT NULL DEFAULT '',
    cursor_value  text,
    state         jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, partition)
);

CREATE TABLE sync_runs (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream         text NOT NULL,
    status         text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled')),
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    rows           jsonb NOT NULL DEFAULT '{}'::jsonb,
    api_calls      integer NOT NULL DEFAULT 0,
    retries        integer NOT NULL DEFAULT 0,
    rate_limited   integer NOT NULL DEFAULT 0,
    errors         integer NOT NULL DEFAULT 0,
    quarantined    integer NOT NULL DEFAULT 0,
    error_message  text,
    duration_ms    bigint
);
CREATE INDEX sync_runs_stream_idx ON sync_runs (stream, started_at DESC);

-- Records that failed validation: kept with the reason, never silently dropped.
CREATE TABLE sync_quarantine (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       bigint REFERENCES sync_runs (id) ON DELETE SET NULL,
    stream       text NOT NULL,
    record_id    text,
    reason       text NOT NULL,
    raw          jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sync_quarantine_stream_idx ON sync_quarantine (stream, created_at DESC);
