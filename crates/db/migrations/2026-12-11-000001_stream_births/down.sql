DROP TABLE IF EXISTS stream_births;
