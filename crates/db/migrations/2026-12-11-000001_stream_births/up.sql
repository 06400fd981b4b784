-- How settled the stream is (the detector's `settled`): how many lines every scoring
-- worker scored, and the positions, among the latest of them, of those that started a
-- template. Workers add the lines they scored after each batch and take the count back
-- when they pull the shared templates, so every replica judges how settled the stream is
-- by every replica's lines, and a restarted worker does not start counting afresh.
-- One row.
CREATE TABLE stream_births (
    id boolean PRIMARY KEY DEFAULT TRUE CHECK (id),
    lines bigint NOT NULL DEFAULT 0,
    births bigint[] NOT NULL DEFAULT '{}'
);
