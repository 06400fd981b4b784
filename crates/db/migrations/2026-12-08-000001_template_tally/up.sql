-- A template's presence is counted once for every replica: each worker adds its written
-- lines to the row's tally under the row's lock, line by line as a single scorer would
-- (before, each replica reported its own view and the larger was kept, so two workers that
-- each saw half of a template's windows stored half). Counting on needs the latest window
-- and its lines, and the latest line at a level that flags alone; rows written before
-- these columns have none (NULL), and their latest window is taken to be their last line's.
ALTER TABLE templates ADD COLUMN presence_window bigint;
ALTER TABLE templates ADD COLUMN window_lines bigint NOT NULL DEFAULT 0;
ALTER TABLE templates ADD COLUMN level_last_seen timestamptz;
-- How the template was first seen (by whichever replica stored it first): after the
-- warm-up, and how unlike every template known then. A replica that pulls the template
-- judges its later lines with these, not as a template of the warm-up.
ALTER TABLE templates ADD COLUMN new_after_warmup boolean NOT NULL DEFAULT false;
ALTER TABLE templates ADD COLUMN novelty real NOT NULL DEFAULT 0;
