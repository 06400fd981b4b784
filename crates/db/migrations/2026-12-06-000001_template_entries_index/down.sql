DROP INDEX IF EXISTS log_entries_template_received_idx;
