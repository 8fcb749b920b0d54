-- TimescaleDB is detected, not assumed. It must be both installed and preloaded
-- (shared_preload_libraries) before CREATE EXTENSION succeeds. Without it, every table above
-- stays an ordinary table and `klaviyo-analytics maintenance` enforces retention.
-- Retention and compression policies are (re)applied by the maintenance command from the
-- configured intervals; this file only converts the tables and enables compression, which must
-- come before any compression policy.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
       OR current_setting('shared_preload_libraries', true) NOT LIKE '%timescaledb%' THEN
        RAISE NOTICE 'TimescaleDB not available: using plain PostgreSQL tables';
        RETURN;
    END IF;
    CREATE EXTENSION IF NOT EXISTS timescaledb;

    PERFORM create_hypertable('klaviyo_events', by_range('timestamp', INTERVAL '7 days'),
                              if_not_exists => true, migrate_data => true);
    PERFORM create_hypertable('klaviyo_aggregated_metrics', by_range('bucket_start', INTERVAL '30 days'),
                              if_not_exists => true, migrate_data => true);
    PERFORM create_hypertable('raw_api_responses', by_range('fetched_at', INTERVAL '1 day'),
                              if_not_exists => true, migrate_data => true);
    PERFORM create_hypertable('fact_revenue', by_range('date', INTERVAL '90 days'),
                              if_not_exists => true, migrate_data => true);
    PERFORM create_hypertable('fact_engagement', by_range('date', INTERVAL '90 days'),
                              if_not_exists => true, migrate_data => true);
    PERFORM create_hypertable('fact_conversions', by_range('date', INTERVAL '90 days'),
                              if_not_exists => true, migrate_data => true);
    PERFORM create_hypertable('forecast_predictions', by_range('date', INTERVAL '90 days'),
                              if_not_exists => true, migrate_data => true);

    ALTER TABLE klaviyo_events SET (
        timescaledb.compress,
        timescaledb.compress_segmentby = 'metric_id',
        timescaledb.compress_orderby = '"timestamp" DESC'
    );
    ALTER TABLE klaviyo_aggregated_metrics SET (
        timescaledb.compress,
        timescaledb.compress_segmentby = 'metric_id',
        timescaledb.compress_orderby = 'bucket_start DESC'
    );
END
$$;
