-- The shopping funnel's stored fact (issue 19): `/api/funnel` reads it instead of the raw
-- events. One row per (profile, local date with a Viewed Product). A range's funnel is the
-- rows of its dates grouped by profile: the profile viewed; it started if any row started,
-- placed if any row placed; its channel is that of its earliest row (the last touch before
-- its first view in the range). `analytics.funnel_facts` keeps it exact after every refresh;
-- `analytics rebuild` fills it, and so does the first refresh after this migration on a
-- database that already holds events (the migration does not know the store's zone; see
-- `fact_builds` below). Plain table on both PostgreSQL and TimescaleDB. Definitions and
-- costs: docs/analytics.md.
CREATE TABLE fact_funnel_days (
    profile_id         text NOT NULL,
    date               date NOT NULL,
    -- The day's first view.
    first_view         timestamptz NOT NULL,
    -- A Started Checkout at most 7 days after one of the day's views; a Placed Order at most
    -- 7 days after such a checkout.
    started            boolean NOT NULL,
    placed             boolean NOT NULL,
    -- The channel of the last touch before `first_view` (email_/sms_ + campaign/flow), else
    -- 'unattributed'.
    channel            text NOT NULL,
    -- The events that make `started`, `placed` and `channel` what they are (the earliest such
    -- checkout; the earliest such order and the latest checkout in the window before it; the
    -- touch): a refresh recomputes a row whose witness lies in its range, so an event deleted
    -- or moved to another profile cannot leave the row stale.
    checkout_ts        timestamptz,
    order_checkout_ts  timestamptz,
    order_ts           timestamptz,
    touch_ts           timestamptz,
    -- Links to the same profile's other rows: the previous row's date, and the first date
    -- from this row on whose row started (placed). A profile's earliest row in [a, b] is the
    -- one whose prev_date is before a (or absent); it started in the range when its
    -- started_from is at most b. So a range's funnel is a count of rows, with no grouping
    -- by profile.
    prev_date          date,
    started_from       date,
    placed_from        date,
    PRIMARY KEY (profile_id, date)
);
-- The range read: an index-only scan of the range's dates.
CREATE INDEX fact_funnel_days_date_idx ON fact_funnel_days (date)
    INCLUDE (prev_date, started_from, placed_from, channel);

-- Facts that have been built in full at least once. A fact added to a database that already
-- holds events starts unbuilt: the first refresh (or `analytics rebuild`) builds it whole and
-- records it here; on an empty database the empty table is already exact.
CREATE TABLE fact_builds (
    fact      text PRIMARY KEY,
    built_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO fact_builds (fact)
SELECT 'fact_funnel_days' WHERE NOT EXISTS (SELECT 1 FROM klaviyo_events);
