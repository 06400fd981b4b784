-- A template's separate arrivals (lines more than a minute after its previous line), the
-- detector's other evidence of steady presence: in a dense stream a routine message
-- arrives again and again within the hour the time windows need. Like `windows`, each
-- worker replica reports its own view and the larger wins.
ALTER TABLE templates ADD COLUMN episodes integer NOT NULL DEFAULT 0;
