ALTER TABLE templates DROP COLUMN IF EXISTS level_episodes;
