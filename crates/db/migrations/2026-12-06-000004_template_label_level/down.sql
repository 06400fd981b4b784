ALTER TABLE templates DROP COLUMN IF EXISTS label_max_level;
