DROP INDEX IF EXISTS templates_last_seen_idx;
DROP INDEX IF EXISTS templates_count_idx;
DROP INDEX IF EXISTS templates_updated_at_idx;
ALTER TABLE templates DROP COLUMN IF EXISTS updated_at;
