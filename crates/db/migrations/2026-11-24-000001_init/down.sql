DROP TABLE api_keys;
DROP TABLE periodic_tasks;
DROP TABLE alerts;
DROP TABLE pattern_detections;
DROP TABLE templates;
DROP TABLE tasks;
DROP FUNCTION logcanary_ensure_partitions(DATE, INT);
DROP TABLE log_entries;
