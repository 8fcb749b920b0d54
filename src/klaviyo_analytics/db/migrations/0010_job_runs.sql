-- The scheduler's history: every scheduled or on-demand job run, including skipped ones
-- (another process held the job's lock) and failures, so nothing fails silently.
CREATE TABLE job_runs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job          text NOT NULL,
    status       text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'skipped')),
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    detail       text
);
CREATE INDEX job_runs_job_idx ON job_runs (job, started_at DESC);
