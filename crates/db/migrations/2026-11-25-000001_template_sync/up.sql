-- Template sharing between worker replicas: every change to a template row (counts,
-- text, embedding, label) stamps `updated_at`, and each replica pulls the rows changed
-- since its last pull. clock_timestamp(), not now(), so a row's stamp is close to its
-- commit even late in a transaction.
ALTER TABLE templates ADD COLUMN updated_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp();
CREATE INDEX templates_updated_at_idx ON templates (updated_at);
-- GET /api/templates/ lists the most frequent or the most recent first.
CREATE INDEX templates_count_idx ON templates (count DESC, id DESC);
CREATE INDEX templates_last_seen_idx ON templates (last_seen DESC, id DESC);
