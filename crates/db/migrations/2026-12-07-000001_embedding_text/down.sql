-- The older binary embeds these templates with their leading values again: clear the
-- embeddings this version computed without them.
UPDATE templates
   SET embedding = NULL
 WHERE embedding IS NOT NULL
   AND (split_part(template, ' ', 1) !~ '[[:alpha:]]'
        OR split_part(template, ' ', 1) ~ '^<([A-Z]+|\*)>$');
