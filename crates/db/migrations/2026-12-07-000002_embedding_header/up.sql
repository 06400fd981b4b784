-- The model now reads a template from the end of its line header on (the detector's
-- `line_header::message_start`): a line shipped with its header (`<TS> host sshd[<NUM>]:
-- ...`, `<TS> INFO [main] o.a.h.Foo: ...`) is embedded from its message. A header needs a
-- level word or a `<TS>` among the template's first 8 words; clear the stored embeddings
-- of every template that has one there (a superset of the templates whose text changed:
-- the others get the same embedding back), so that the workers embed them again on their
-- next line. Until then such a template has no neighbours: an operator's label on it keeps
-- deciding its own lines but votes for close templates again from its next line.
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
