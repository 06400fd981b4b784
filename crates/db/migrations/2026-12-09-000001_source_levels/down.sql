DROP TABLE IF EXISTS source_levels;
