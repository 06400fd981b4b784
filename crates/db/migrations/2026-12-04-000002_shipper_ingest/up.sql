-- Log shippers (issue 14): OpenTelemetry, Loki and Elasticsearch clients send a bearer
-- token (or basic auth / `ApiKey`), not an HMAC over the body.
--
-- `api_tokens` keeps only the SHA-256 of each token: the tokens are 256-bit random
-- strings made by `ingest-api create-token`, so a fast hash is as safe as a slow one and
-- lets a request be matched by one index lookup. A leaked table leaks no credential.
CREATE TABLE api_tokens (
    name TEXT PRIMARY KEY,
    token_sha256 BYTEA NOT NULL UNIQUE CHECK (octet_length(token_sha256) = 32),
    scopes TEXT[] NOT NULL DEFAULT ARRAY['ingest']::TEXT[]
        CHECK (scopes <@ ARRAY['ingest', 'read', 'operate', 'admin']::TEXT[] AND cardinality(scopes) > 0),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at TIMESTAMPTZ
);

-- What a shipper says about a line beyond its text: OTLP resource and record attributes,
-- Loki stream labels, the other fields of an Elasticsearch document. NULL for entries of
-- the JSON API. Not read by the workers.
ALTER TABLE log_entries ADD COLUMN attributes JSONB;
