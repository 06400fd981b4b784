ALTER TABLE templates DROP COLUMN level_arrivals;
ALTER TABLE templates DROP COLUMN arrivals;
ALTER TABLE templates DROP COLUMN window_bits;
