ALTER TABLE templates DROP COLUMN novelty;
ALTER TABLE templates DROP COLUMN new_after_warmup;
ALTER TABLE templates DROP COLUMN level_last_seen;
ALTER TABLE templates DROP COLUMN window_lines;
ALTER TABLE templates DROP COLUMN presence_window;
