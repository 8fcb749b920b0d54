-- Time partitioning on both back ends, created ahead of the data.
--
-- Plain PostgreSQL: klaviyo_events and raw_api_responses become tables partitioned by range
-- on their time column, one partition a month (UTC), named <table>_pYYYYMM, plus a DEFAULT
-- partition that catches a row no partition was made for yet (an insert never fails);
-- ka_ensure_partitions() moves such rows into their month when it is created. Indexes are
-- declared on the parent, so every partition gets its own. Retention drops whole partitions.
--
-- TimescaleDB: the tables are hypertables already (0005). ka_ensure_partitions() creates the
-- chunks a range needs before the data arrives, so that no long writing transaction creates a
-- chunk, whose foreign keys lock klaviyo_metrics/klaviyo_profiles (SHARE ROW EXCLUSIVE) while
-- other writers hold locks there: that was a deadlock. It uses TimescaleDB's
-- _timescaledb_functions.create_chunk(), an internal but stable function (2.x).
--
-- Callers serialise on one advisory lock only when something is missing, so the usual call
-- (every partition exists) takes no lock at all.
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

DO $$
DECLARE
    t        record;
    idx      record;
    defs     text[];
    m        timestamptz;
    ident    boolean;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        -- Segment by what every query filters on, order by time (ranges prune batches by their
        -- min/max) and then by the rest of the unique key, which TimescaleDB needs to check
        -- ON CONFLICT against compressed batches without decompressing others (0005's warning
        -- "column id should be used for segmenting or ordering").
        ALTER TABLE klaviyo_events SET (
            timescaledb.compress_segmentby = 'metric_id',
            timescaledb.compress_orderby = '"timestamp" DESC, id'
        );
        -- Aggregates are always read for one bucket size of one metric over a time range.
        ALTER TABLE klaviyo_aggregated_metrics SET (
            timescaledb.compress_segmentby = 'metric_id, bucket_size',
            timescaledb.compress_orderby = 'bucket_start DESC'
        );
        -- Only events have foreign keys; raw responses' 1-day chunks are made as rows come.
        PERFORM ka_ensure_partitions('klaviyo_events', now(), now() + interval '3 months');
        RETURN;
    END IF;

    FOR t IN SELECT * FROM (VALUES ('klaviyo_events', 'timestamp'),
                                   ('raw_api_responses', 'fetched_at')) AS v(name, col)
    LOOP
        IF (SELECT relkind FROM pg_class WHERE oid = t.name::regclass) = 'p' THEN
            CONTINUE;
        END IF;
        -- Keep every index definition (later migrations may have added some), free the names.
        defs := ARRAY(SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
                       WHERE i.indrelid = t.name::regclass AND NOT i.indisprimary);
        EXECUTE format('ALTER TABLE %I RENAME TO %I', t.name, t.name || '_heap');
        FOR idx IN SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                    WHERE i.indrelid = (t.name || '_heap')::regclass
        LOOP
            EXECUTE format('ALTER INDEX %I RENAME TO %I', idx.relname, left(idx.relname, 50) || '_heap');
        END LOOP;
        ident := EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = (t.name || '_heap')::regclass
                          AND attidentity <> '');
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS'
                       ' INCLUDING IDENTITY INCLUDING STORAGE) PARTITION BY RANGE (%I)',
                       t.name, t.name || '_heap', t.col);
        IF t.name = 'klaviyo_events' THEN
            ALTER TABLE klaviyo_events ADD PRIMARY KEY (id, "timestamp"),
                ADD FOREIGN KEY (metric_id) REFERENCES klaviyo_metrics (id),
                ADD FOREIGN KEY (profile_id) REFERENCES klaviyo_profiles (id);
        ELSE
            ALTER TABLE raw_api_responses ADD PRIMARY KEY (id, fetched_at);
        END IF;
        EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', t.name || '_default', t.name);
        FOR i IN 1 .. coalesce(array_length(defs, 1), 0) LOOP
            EXECUTE defs[i];
        END LOOP;
        -- A partition for every month that holds data, and for this month and three ahead.
        FOR m IN EXECUTE format('SELECT DISTINCT date_trunc(''month'', %I, ''UTC'') FROM %I',
                                t.col, t.name || '_heap')
        LOOP
            PERFORM ka_ensure_partitions(t.name::regclass, m, m);
        END LOOP;
        PERFORM ka_ensure_partitions(t.name::regclass, now(), now() + interval '3 months');
        IF ident THEN
            EXECUTE format('INSERT INTO %I OVERRIDING SYSTEM VALUE SELECT * FROM %I',
                           t.name, t.name || '_heap');
            EXECUTE format('SELECT setval(pg_get_serial_sequence(%L, ''id''),'
                           ' greatest((SELECT max(id) FROM %I), 1))', t.name, t.name);
        ELSE
            EXECUTE format('INSERT INTO %I SELECT * FROM %I', t.name, t.name || '_heap');
        END IF;
        EXECUTE format('DROP TABLE %I', t.name || '_heap');
    END LOOP;
END
$$;
