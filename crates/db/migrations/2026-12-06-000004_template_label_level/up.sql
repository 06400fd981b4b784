-- The most severe level among a template's entries of the day when an operator marked it
-- normal (what the review queue and the dashboard showed them). A normal label covers a
-- line at a level that flags by itself (CRITICAL with the default weights) above it only
-- once the template's lines at that level arrive steadily: "normal" said of INFO chatter
-- does not vouch for a later CRITICAL burst of it. NULL: every level (anomaly labels, and
-- labels given before this column).
ALTER TABLE templates ADD COLUMN label_max_level text;
