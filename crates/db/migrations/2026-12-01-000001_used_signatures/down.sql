DROP TABLE used_signatures;
