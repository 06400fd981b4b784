-- Timestamped request signatures already used, shared by every ingest-api replica so a
-- replay is refused whichever replica it reaches. A row is useless once the signature's
-- timestamp has left the tolerance window (`expires_at`); ingest-api deletes those.
CREATE TABLE used_signatures (
    mac bytea PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX used_signatures_expires_at ON used_signatures (expires_at);
