-- A template's recent entries: an operator's label re-scores them (feedback), and so does
-- the template being learned as normal (db::templates::rescore_learned_normal, run by the
-- scoring workers whenever a template first shows steady presence). Without this index
-- each of those reads the whole day's partitions.
CREATE INDEX log_entries_template_received_idx ON log_entries (template_id, received_at);
