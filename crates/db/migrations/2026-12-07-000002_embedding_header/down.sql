-- The older binary mines and embeds lines with their header again: clear the embeddings
-- this version computed without it.
UPDATE templates
   SET embedding = NULL
 WHERE embedding IS NOT NULL
   AND EXISTS (
       SELECT 1
         FROM unnest((string_to_array(template, ' '))[1:8]) AS w(word)
        WHERE w.word LIKE '%<TS>%'
           OR upper(btrim(rtrim(w.word, ':'), '[]')) IN (
                'TRACE', 'DEBUG', 'FINE', 'FINER', 'FINEST', 'INFO', 'LOG', 'NOTICE', 'WARN',
                'WARNING', 'ERR', 'ERROR', 'SEVERE', 'CRIT', 'CRITICAL', 'FATAL', 'FAILURE',
                'ALERT', 'EMERG', 'EMERGENCY', 'PANIC')
   );
