-- Each analysed entry's prior score (issue 10): what the detector's level, meaning,
-- novelty and newness gave the line before an operator's label, a close template's label
-- or "learned as normal" decided `anomaly_score`. The review queue (`GET /api/review/`)
-- ranks a template learned as normal by it: its `anomaly_score` is already lowered by
-- that rule, so only the prior says whether the rule may be wrong. NULL for entries
-- scored before this column existed (the queue then reads `anomaly_score`).
ALTER TABLE log_entries ADD COLUMN prior_score REAL;
