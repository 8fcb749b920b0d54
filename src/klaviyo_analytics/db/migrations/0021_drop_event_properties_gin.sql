-- Drop the GIN (jsonb_path_ops) index on klaviyo_events.properties (issue 17).
--
-- A jsonb_path_ops index serves only the @>, @? and @@ operators, and no query of the
-- application uses them on events: analytics read properties with ->> on rows that the
-- metric/time, profile/time or attribution indexes already found. Yet every stored event paid
-- for it (about 0.8 ms of backend CPU per 1,000 events written, and the index's size on disk).
-- Dropping the parent's index drops it on every partition or TimescaleDB chunk as well.
DROP INDEX IF EXISTS klaviyo_events_properties_idx;
