ALTER TABLE log_entries DROP COLUMN attributes;
DROP TABLE api_tokens;
