-- Lock order of partition (chunk) creation, so that it cannot deadlock with writers (issue 16).
--
-- Creating a partition or chunk of klaviyo_events clones its foreign keys, and each clone
-- takes SHARE ROW EXCLUSIVE on the table it references: klaviyo_metrics, then klaviyo_profiles.
-- A writer that had inserted stub profiles (ROW EXCLUSIVE on klaviyo_profiles) and then
-- wanted to insert stub metrics waited for the creator, which waited for it: "deadlock
-- detected", 2-5 times in a concurrent backfill (absorbed by retries). Now every lock on the
-- referenced tables is taken in one order, by table name: ka_ensure_partitions() takes them
-- all up front, before it creates anything, and writers insert stub metrics before stub
-- profiles (db/repos/events.py). Only a call that creates something takes these locks.
CREATE OR REPLACE FUNCTION ka_lock_referenced(parent regclass)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    ref text;
BEGIN
    FOR ref IN SELECT DISTINCT confrelid::regclass::text FROM pg_constraint
                WHERE conrelid = parent AND contype = 'f' ORDER BY 1
    LOOP
        EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', ref);
    END LOOP;
END
$fn$;

-- As in 0014, plus ka_lock_referenced() once the advisory lock is held.
CREATE OR REPLACE FUNCTION ka_ensure_partitions(parent regclass, lo timestamptz, hi timestamptz)
RETURNS integer
LANGUAGE plpgsql
AS $fn$
DECLARE
    base     text;
    col      text;
    def      regclass;
    month    timestamptz;
    month_end timestamptz;
    part     text;
    created  integer := 0;
    locked   boolean := false;
    ht_interval bigint;
    slice    bigint;
    point    bigint;
    last     bigint;
BEGIN
    IF lo IS NULL OR hi IS NULL OR hi < lo THEN
        RETURN 0;
    END IF;
    SELECT c.relname, a.attname INTO base, col
      FROM pg_partitioned_table p
      JOIN pg_class c ON c.oid = p.partrelid
      JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
     WHERE p.partrelid = parent;
    IF FOUND THEN
        def := to_regclass(quote_ident(base || '_default'));
        month := date_trunc('month', lo, 'UTC');
        WHILE month <= hi LOOP
            month_end := ((month AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
            part := base || '_p' || to_char(month AT TIME ZONE 'UTC', 'YYYYMM');
            -- A query of pg_class, not to_regclass(): after waiting for the lock, only a fresh
            -- statement snapshot sees the partition another session just created (the catalog
            -- cache to_regclass() reads is not refreshed by an advisory lock).
            IF NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                            WHERE c.relname = part AND n.nspname = current_schema()) THEN
                IF NOT locked THEN
                    PERFORM pg_advisory_xact_lock(hashtext('ka_ensure_partitions'), hashtext(parent::text));
                    locked := true;
                    PERFORM ka_lock_referenced(parent);
                    CONTINUE;  -- look again: another session may have made it meanwhile
                END IF;
                EXECUTE format('CREATE TABLE %I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                               part, parent);
                IF def IS NOT NULL THEN
                    EXECUTE format('WITH moved AS (DELETE FROM %s WHERE %I >= $1 AND %I < $2 RETURNING *)'
                                   ' INSERT INTO %I SELECT * FROM moved', def, col, col, part)
                      USING month, month_end;
                END IF;
                EXECUTE format('ALTER TABLE %s ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                               parent, part, month, month_end);
                created := created + 1;
            END IF;
            month := month_end;
        END LOOP;
        RETURN created;
    END IF;

    -- A hypertable: one chunk per aligned interval of its time dimension.
    IF to_regclass('_timescaledb_catalog.dimension') IS NULL THEN
        RETURN 0;
    END IF;
    EXECUTE 'SELECT d.interval_length FROM _timescaledb_catalog.dimension d'
            ' JOIN _timescaledb_catalog.hypertable h ON h.id = d.hypertable_id'
            ' WHERE format(''%I.%I'', h.schema_name, h.table_name)::regclass = $1'
            '   AND d.interval_length IS NOT NULL ORDER BY d.id LIMIT 1'
       INTO ht_interval USING parent;
    IF ht_interval IS NULL THEN
        RETURN 0;
    END IF;
    EXECUTE 'SELECT d.column_name FROM _timescaledb_catalog.dimension d'
            ' JOIN _timescaledb_catalog.hypertable h ON h.id = d.hypertable_id'
            ' WHERE format(''%I.%I'', h.schema_name, h.table_name)::regclass = $1'
            ' ORDER BY d.id LIMIT 1'
       INTO col USING parent;
    point := floor(extract(epoch FROM lo) * 1000000)::bigint;
    last := floor(extract(epoch FROM hi) * 1000000)::bigint;
    slice := point - ((point % ht_interval) + ht_interval) % ht_interval;
    WHILE slice <= last LOOP
        IF NOT EXISTS (
            SELECT 1 FROM timescaledb_information.chunks ch
             WHERE format('%I.%I', ch.hypertable_schema, ch.hypertable_name)::regclass = parent
               AND ch.range_start <= to_timestamp(slice / 1000000.0)
               AND ch.range_end > to_timestamp(slice / 1000000.0)
        ) THEN
            IF NOT locked THEN
                PERFORM pg_advisory_xact_lock(hashtext('ka_ensure_partitions'), hashtext(parent::text));
                locked := true;
                PERFORM ka_lock_referenced(parent);
                CONTINUE;
            END IF;
            PERFORM _timescaledb_functions.create_chunk(
                parent, jsonb_build_object(col, jsonb_build_array(slice, slice + ht_interval)));
            created := created + 1;
        END IF;
        slice := slice + ht_interval;
    END LOOP;
    RETURN created;
END
$fn$;
