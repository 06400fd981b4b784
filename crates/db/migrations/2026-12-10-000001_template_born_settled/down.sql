ALTER TABLE templates DROP COLUMN IF EXISTS born_settled;
