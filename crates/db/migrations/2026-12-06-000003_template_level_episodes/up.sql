-- A template's separate arrivals at the levels that flag a line by themselves (CRITICAL
-- with the default weights): steady presence covers such a line only when these are steady
-- too, so a CRITICAL burst of a message otherwise seen at INFO stays flagged. Like
-- `episodes`, each worker replica reports its own view and the larger wins. Rows written
-- before this column start at 0: after the upgrade a routine CRITICAL template is flagged
-- again until its CRITICAL lines have arrived `normal_after_windows` separate times.
ALTER TABLE templates ADD COLUMN level_episodes integer NOT NULL DEFAULT 0;
