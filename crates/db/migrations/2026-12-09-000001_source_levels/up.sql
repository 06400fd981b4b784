-- Which sources mark their trouble by level (the detector's `levels`): the lines each
-- source sent and how many of them were at WARNING or above, added by every scoring
-- worker in the transaction that writes its batch, so that each replica judges a source
-- by every replica's lines. The row with source '' counts the whole stream.
CREATE TABLE source_levels (
    source text PRIMARY KEY,
    lines bigint NOT NULL DEFAULT 0,
    trouble bigint NOT NULL DEFAULT 0
);
