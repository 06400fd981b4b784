-- A template's presence over time, as the detector judges "learned normal" on it: the
-- separate time windows (10 minutes by default) it was seen in and the most lines it had
-- in any one of them. Each worker replica reports its own view and the larger wins, so a
-- restarted or new replica does not learn again what the others already learned.
ALTER TABLE templates
    ADD COLUMN windows integer NOT NULL DEFAULT 0,
    ADD COLUMN max_window_lines bigint NOT NULL DEFAULT 0;
