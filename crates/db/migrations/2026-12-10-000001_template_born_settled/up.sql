-- How settled the stream was when the template was first seen (the detector's `settled`,
-- 0 to 1: how few of the latest lines had started a template), by the replica that stored
-- it first: a replica that pulls the template weighs its newness as that replica did.
-- Rows stored before it: 0 (their newness counts as before).
ALTER TABLE templates ADD COLUMN born_settled real NOT NULL DEFAULT 0;
