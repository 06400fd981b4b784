-- Workers commit their batches in whatever order they finish, and clients send late
-- lines: the tally places a line that is older than the template's latest among what it
-- keeps of the recent past. `window_bits`: the latest 64 presence windows the template was
-- seen in (bit i is `presence_window - i`; 0 on older rows: the latest window only).
-- `arrivals` and `level_arrivals`: its latest 8 arrivals, all and at the levels that flag
-- alone, as first and last line in milliseconds since the epoch, flattened
-- (start, end, start, end, ...), oldest first; empty on older rows (the last line is then
-- all that is known of them).
ALTER TABLE templates ADD COLUMN window_bits bigint NOT NULL DEFAULT 0;
ALTER TABLE templates ADD COLUMN arrivals bigint[] NOT NULL DEFAULT '{}';
ALTER TABLE templates ADD COLUMN level_arrivals bigint[] NOT NULL DEFAULT '{}';
