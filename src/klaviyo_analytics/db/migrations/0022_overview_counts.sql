-- What the overview read from row-level tables, kept per day instead (issue 16): at 5 M events
-- the 365-day overview on PostgreSQL 15 spent 48 ms summing fact_orders' rows by attribution
-- rule and 27 ms counting klaviyo_profiles by `created` (91 % of the profiles), of 126 ms.

-- Revenue by attribution rule, per day and channel, beside the revenue it splits: Klaviyo's
-- own attribution carried by the order, or our last touch. `analytics.attribution` computes
-- both from fact_orders with the rest of the row, so they stay exact after every refresh.
ALTER TABLE fact_revenue
    ADD COLUMN klaviyo_revenue numeric NOT NULL DEFAULT 0,
    ADD COLUMN last_touch_revenue numeric NOT NULL DEFAULT 0;
UPDATE fact_revenue r
SET klaviyo_revenue = s.klaviyo, last_touch_revenue = s.last_touch
FROM (
    SELECT date, channel,
        coalesce(sum(value) FILTER (WHERE attribution = 'klaviyo'), 0) AS klaviyo,
        coalesce(sum(value) FILTER (WHERE attribution = 'last_touch'), 0) AS last_touch
    FROM fact_orders GROUP BY 1, 2
) s
WHERE r.date = s.date AND r.channel = s.channel;

-- Profiles (not stubs) created per UTC day. UTC, not the store's zone: the table is kept by
-- the triggers below, which know no zone, and a range of store days is read as its whole UTC
-- days from here plus the two partial days at its ends from klaviyo_profiles_created_idx
-- (under 24 hours each), exact in any zone. Triggers rather than a sync step, so that every
-- writer of klaviyo_profiles (profile sync, event stubs becoming profiles, deletes) keeps it
-- exact; statement-level with transition tables, so that a batch upsert costs one statement.
CREATE TABLE fact_profiles_created (
    utc_date  date PRIMARY KEY,
    profiles  bigint NOT NULL
);
INSERT INTO fact_profiles_created (utc_date, profiles)
SELECT (created AT TIME ZONE 'UTC')::date, count(*)
FROM klaviyo_profiles WHERE NOT is_stub AND created IS NOT NULL GROUP BY 1;

-- A row counts where it is a profile with a creation time; an update counts -1 for its old
-- row and +1 for its new one. Only days whose count changed are written, in date order, so
-- concurrent writers lock the same rows in the same order. Each branch reads only the
-- transition tables its trigger has (PL/pgSQL plans a statement when it first runs it).
CREATE FUNCTION ka_count_profiles_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM fact_profiles_created;
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO fact_profiles_created AS f (utc_date, profiles)
        SELECT (created AT TIME ZONE 'UTC')::date, count(*) FROM new_rows
        WHERE NOT is_stub AND created IS NOT NULL GROUP BY 1 ORDER BY 1
        ON CONFLICT (utc_date) DO UPDATE SET profiles = f.profiles + excluded.profiles;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO fact_profiles_created AS f (utc_date, profiles)
        SELECT (created AT TIME ZONE 'UTC')::date, -count(*) FROM old_rows
        WHERE NOT is_stub AND created IS NOT NULL GROUP BY 1 ORDER BY 1
        ON CONFLICT (utc_date) DO UPDATE SET profiles = f.profiles + excluded.profiles;
    ELSE
        INSERT INTO fact_profiles_created AS f (utc_date, profiles)
        SELECT d, sum(n) FROM (
            SELECT (created AT TIME ZONE 'UTC')::date AS d, 1 AS n FROM new_rows
            WHERE NOT is_stub AND created IS NOT NULL
            UNION ALL
            SELECT (created AT TIME ZONE 'UTC')::date, -1 FROM old_rows
            WHERE NOT is_stub AND created IS NOT NULL
        ) t
        GROUP BY d HAVING sum(n) <> 0 ORDER BY d
        ON CONFLICT (utc_date) DO UPDATE SET profiles = f.profiles + excluded.profiles;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER klaviyo_profiles_created_insert AFTER INSERT ON klaviyo_profiles
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ka_count_profiles_created();
CREATE TRIGGER klaviyo_profiles_created_update AFTER UPDATE ON klaviyo_profiles
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ka_count_profiles_created();
CREATE TRIGGER klaviyo_profiles_created_delete AFTER DELETE ON klaviyo_profiles
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ka_count_profiles_created();
CREATE TRIGGER klaviyo_profiles_created_truncate AFTER TRUNCATE ON klaviyo_profiles
    FOR EACH STATEMENT EXECUTE FUNCTION ka_count_profiles_created();
