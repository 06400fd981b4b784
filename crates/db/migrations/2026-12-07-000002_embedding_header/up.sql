-- Lines shipped with their line header (`<TS> host sshd[<NUM>]: ...`, `<TS> INFO [main]
-- o.a.h.Foo: ...`) are now mined and embedded by their message (the detector's
-- `line_header`). A template mined earlier with a header in front gets no more lines: the
-- next line of its message starts a template of the message alone, learned afresh. The
-- stored embeddings of such templates were computed with the header's words, which make
-- every message of a source look like every other; clear them, so that they neither make a
-- new message look known nor vote with an operator's label at a misleading similarity.
-- Cleared: every template with a `<TS>` or a level word among its first 8 words (a
-- superset; a template whose text the change does not touch is embedded again, identically,
-- on its next line).
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
