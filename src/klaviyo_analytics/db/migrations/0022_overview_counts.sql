-- What the overview read from row-level tables, kept per day instead (issue 16): at 5 M events
-- the 365-day overview on PostgreSQL 15 spent, of 126 ms, 48 ms summing fact_orders' rows by
-- attribution rule, 40 ms counting distinct customers over fact_orders, 27 ms counting
-- klaviyo_profiles by `created` (91 % of the profiles) and 13 ms summing message engagement
-- (the last is now read from fact_engagement, which held the same sums).

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

-- The rows a statement-level trigger's statement changed, signed: +1 for each new row, -1
-- for each old one (an update is both). The counting functions below read them through it,
-- so that one query serves inserts, updates and deletes (transition tables are visible to
-- the dynamic SQL of the trigger's function).
CREATE FUNCTION ka_changed_rows(op text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE op
        WHEN 'INSERT' THEN 'SELECT *, 1 AS sign FROM new_rows'
        WHEN 'DELETE' THEN 'SELECT *, -1 AS sign FROM old_rows'
        ELSE 'SELECT *, 1 AS sign FROM new_rows UNION ALL SELECT *, -1 FROM old_rows'
    END
$$;

-- A row counts where it is a profile with a creation time. Only days whose count changed are
-- written, in date order, so concurrent writers lock the same rows in the same order.
CREATE FUNCTION ka_count_profiles_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM fact_profiles_created;
        RETURN NULL;
    END IF;
    EXECUTE format(
        'INSERT INTO fact_profiles_created AS f (utc_date, profiles)'
        ' SELECT (created AT TIME ZONE ''UTC'')::date, sum(sign) FROM (%s) r'
        ' WHERE NOT is_stub AND created IS NOT NULL'
        ' GROUP BY 1 HAVING sum(sign) <> 0 ORDER BY 1'
        ' ON CONFLICT (utc_date) DO UPDATE SET profiles = f.profiles + excluded.profiles',
        ka_changed_rows(TG_OP));
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

-- Distinct customers of a range of dates [a, b] without scanning its orders. Over the orders
-- with a profile, with p the date of the profile's previous order (fact_orders.
-- prev_order_date; none counts as before everything), a profile is counted once in [a, b],
-- on its order with p < a <= date <= b. As p <= date, the orders with p < a are those dated
-- before a and those straddling a; the straddlers dated after b are the ones to take away:
--     #(p < a)  -  #(date < a)  -  #(p < a, date > b).
-- Per day this table keeps `orders` (dated that day), `firsts` (dated that day, without a
-- previous order) and `prevs` (whose previous order is that day), so the first two terms are
--     sum(firsts) over days <= b  +  sum(prevs - orders) over days < a.
-- The third counts orders whose gap from the previous order spans all of [a, b]: from
-- fact_orders_gap_idx (gaps longer than the range: few for long ranges), or for short ranges
-- from the date index (the orders after b). The same for attributed buyers, over attributed
-- orders and prev_buyer_date. Kept by triggers on fact_orders, as fact_profiles_created is.
CREATE TABLE fact_order_days (
    date          date PRIMARY KEY,
    orders        bigint NOT NULL DEFAULT 0,
    firsts        bigint NOT NULL DEFAULT 0,
    prevs         bigint NOT NULL DEFAULT 0,
    buyer_orders  bigint NOT NULL DEFAULT 0,
    buyer_firsts  bigint NOT NULL DEFAULT 0,
    buyer_prevs   bigint NOT NULL DEFAULT 0
);
CREATE INDEX fact_orders_gap_idx ON fact_orders ((date - prev_order_date))
    INCLUDE (date, prev_order_date)
    WHERE profile_id IS NOT NULL AND prev_order_date IS NOT NULL;
CREATE INDEX fact_orders_buyer_gap_idx ON fact_orders ((date - prev_buyer_date))
    INCLUDE (date, prev_buyer_date)
    WHERE profile_id IS NOT NULL AND prev_buyer_date IS NOT NULL AND channel <> 'unattributed';

-- The statement that adds the signed contributions of the order rows `src` (a query with a
-- `sign` column) to fact_order_days, in date order, writing only the days that changed. A
-- text, run by the trigger's own function: a function it called would not see the
-- transition tables.
CREATE FUNCTION ka_order_days_upsert(src text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT format(
        'WITH r AS (%s)'
        ' INSERT INTO fact_order_days AS f'
        '  (date, orders, firsts, prevs, buyer_orders, buyer_firsts, buyer_prevs)'
        ' SELECT d, sum(o), sum(fi), sum(p), sum(bo), sum(bf), sum(bp) FROM ('
        '  SELECT date AS d, sign AS o, sign * (prev_order_date IS NULL)::int AS fi, 0 AS p,'
        '   sign * (channel <> ''unattributed'')::int AS bo,'
        '   sign * (channel <> ''unattributed'' AND prev_buyer_date IS NULL)::int AS bf,'
        '   0 AS bp'
        '  FROM r WHERE profile_id IS NOT NULL'
        '  UNION ALL SELECT prev_order_date, 0, 0, sign, 0, 0, 0 FROM r'
        '  WHERE profile_id IS NOT NULL AND prev_order_date IS NOT NULL'
        '  UNION ALL SELECT prev_buyer_date, 0, 0, 0, 0, 0, sign FROM r'
        '  WHERE profile_id IS NOT NULL AND prev_buyer_date IS NOT NULL'
        '  AND channel <> ''unattributed'''
        ' ) t GROUP BY d'
        ' HAVING sum(o) <> 0 OR sum(fi) <> 0 OR sum(p) <> 0 OR sum(bo) <> 0'
        '  OR sum(bf) <> 0 OR sum(bp) <> 0'
        ' ORDER BY d'
        ' ON CONFLICT (date) DO UPDATE SET orders = f.orders + excluded.orders,'
        '  firsts = f.firsts + excluded.firsts, prevs = f.prevs + excluded.prevs,'
        '  buyer_orders = f.buyer_orders + excluded.buyer_orders,'
        '  buyer_firsts = f.buyer_firsts + excluded.buyer_firsts,'
        '  buyer_prevs = f.buyer_prevs + excluded.buyer_prevs',
        src)
$$;
CREATE FUNCTION ka_count_order_days() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM fact_order_days;
    ELSE
        EXECUTE ka_order_days_upsert(ka_changed_rows(TG_OP));
    END IF;
    RETURN NULL;
END
$$;
DO $$ BEGIN EXECUTE ka_order_days_upsert('SELECT *, 1 AS sign FROM fact_orders'); END $$;
CREATE TRIGGER fact_orders_days_insert AFTER INSERT ON fact_orders
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ka_count_order_days();
CREATE TRIGGER fact_orders_days_update AFTER UPDATE ON fact_orders
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ka_count_order_days();
CREATE TRIGGER fact_orders_days_delete AFTER DELETE ON fact_orders
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ka_count_order_days();
CREATE TRIGGER fact_orders_days_truncate AFTER TRUNCATE ON fact_orders
    FOR EACH STATEMENT EXECUTE FUNCTION ka_count_order_days();
