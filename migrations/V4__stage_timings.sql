-- Seconds spent in each stage of a file attempt (read, transform, protect, copy, merge).
ALTER TABLE etl_runs ADD COLUMN stage_seconds jsonb;
