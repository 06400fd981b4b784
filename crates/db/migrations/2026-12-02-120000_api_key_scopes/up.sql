-- What each stored key may do (issue 13): `ingest` (the old API's POST endpoints),
-- `read` (GETs), `operate` (feedback, labels, periodic tasks, triggering analysis) and
-- `admin` (keys). Existing rows keep only `ingest`: a shipper's key is no admin key.
ALTER TABLE api_keys
    ADD COLUMN scopes TEXT[] NOT NULL DEFAULT ARRAY['ingest']::TEXT[];
ALTER TABLE api_keys
    ADD CONSTRAINT api_keys_scopes_known
    CHECK (scopes <@ ARRAY['ingest', 'read', 'operate', 'admin']::TEXT[] AND cardinality(scopes) > 0);
