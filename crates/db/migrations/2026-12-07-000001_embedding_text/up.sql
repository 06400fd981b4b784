-- The model now reads a template from its first word (the scorer's `embedding_text`):
-- values before it (`<NUM> failures on node <HOST>`, `<HOST>: open`, a line header
-- `- <NUM> <TS> ...`: a first token without a letter once its placeholders are removed) are
-- no longer embedded. Stored embeddings of such templates were computed from the old text;
-- clear them so that the workers embed them again (a template without an embedding is
-- embedded on its next line, and the first stored embedding wins). Until then such a
-- template has no neighbours: an operator's label on it keeps deciding its own lines but
-- votes for close templates again from its next line.
UPDATE templates
   SET embedding = NULL
 WHERE embedding IS NOT NULL
   AND regexp_replace(split_part(template, ' ', 1), '<([A-Z]+|\*)>', '', 'g') !~ '[[:alpha:]]';
