-- The older binary embeds these templates with their leading values again: clear the
-- embeddings this version computed without them.
UPDATE templates
   SET embedding = NULL
 WHERE embedding IS NOT NULL
   AND regexp_replace(split_part(template, ' ', 1), '<([A-Z]+|\*)>', '', 'g') !~ '[[:alpha:]]';
