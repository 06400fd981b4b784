ALTER TABLE log_entries DROP COLUMN prior_score;
