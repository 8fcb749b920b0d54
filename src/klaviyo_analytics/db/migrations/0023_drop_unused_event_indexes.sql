-- Drop two indexes on klaviyo_events that no query uses (issue 17).
--
-- klaviyo_events_positive_value_idx, (metric_id, timestamp) WHERE value > 0: no statement of
-- the application has `value > 0` in its WHERE clause; revenue is summed from the rows the
-- metric/time index finds (it INCLUDEs value), so no plan could pick this one.
-- klaviyo_events_time_brin_idx: a BRIN on timestamp beside the btree klaviyo_events_recent_idx
-- on (timestamp DESC), which serves every range scan by time the BRIN could (and TimescaleDB
-- adds its own time index to every chunk as well).
-- Every stored event paid for both: an index entry each, and their share of the WAL.
-- Dropping the parent's index drops it on every partition or TimescaleDB chunk as well.
DROP INDEX IF EXISTS klaviyo_events_positive_value_idx;
DROP INDEX IF EXISTS klaviyo_events_time_brin_idx;
