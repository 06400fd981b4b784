ALTER TABLE templates
    DROP COLUMN IF EXISTS max_window_lines,
    DROP COLUMN IF EXISTS windows;
