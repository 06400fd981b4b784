-- logcanary initial schema.

-- Log entries, range-partitioned by day of arrival so retention drops whole partitions
-- and the hot partition stays small. The DEFAULT partition catches any row whose day has
-- no partition yet, so an insert never fails for lack of one.
CREATE TABLE log_entries (
    id               BIGSERIAL NOT NULL,
    received_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    logged_at        TIMESTAMPTZ NOT NULL,
    severity         TEXT NOT NULL CHECK (severity IN ('DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL')),
    message          TEXT NOT NULL,
    source           TEXT,
    analysis_task_id UUID,
    anomaly_score    DOUBLE PRECISION,
    is_anomaly       BOOLEAN,
    summary          TEXT,
    template_id      BIGINT,
    analyzed_at      TIMESTAMPTZ,
    PRIMARY KEY (id, received_at)
) PARTITION BY RANGE (received_at);

CREATE TABLE log_entries_default PARTITION OF log_entries DEFAULT;

-- Lookups by id (GET /api/logs/{id}/) and by task (the worker loading its entries).
CREATE INDEX log_entries_id_idx ON log_entries (id);
CREATE INDEX log_entries_task_idx ON log_entries (analysis_task_id);
-- Newest-first listing and time-window scans (dashboard, pattern analysis).
CREATE INDEX log_entries_logged_at_idx ON log_entries (logged_at DESC, id DESC);
CREATE INDEX log_entries_source_logged_at_idx ON log_entries (source, logged_at);
CREATE INDEX log_entries_severity_logged_at_idx ON log_entries (severity, logged_at);
-- Anomalies are few: a partial index keeps "recent anomalies" cheap.
CREATE INDEX log_entries_anomalies_idx ON log_entries (logged_at DESC) WHERE is_anomaly;

-- Creates the daily partitions of log_entries from `from_day` for `days` days. Idempotent.
CREATE FUNCTION logcanary_ensure_partitions(from_day DATE, days INT) RETURNS INT
LANGUAGE plpgsql AS $$
DECLARE
    d DATE;
    created INT := 0;
    part TEXT;
BEGIN
    FOR i IN 0 .. days - 1 LOOP
        d := from_day + i;
        part := 'log_entries_' || to_char(d, 'YYYYMMDD');
        IF to_regclass(part) IS NULL THEN
            -- A day already present in the default partition cannot get its own
            -- partition without moving rows; leave such days in the default one.
            IF NOT EXISTS (
                SELECT 1 FROM log_entries_default
                WHERE received_at >= (d::timestamp AT TIME ZONE 'UTC')
                  AND received_at < ((d + 1)::timestamp AT TIME ZONE 'UTC')
            ) THEN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF log_entries FOR VALUES FROM (%L) TO (%L)',
                    part, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
                created := created + 1;
            END IF;
        END IF;
    END LOOP;
    RETURN created;
END;
$$;

-- Celery-like task records: one per published unit of work.
CREATE TABLE tasks (
    id             UUID PRIMARY KEY,
    task_name      TEXT NOT NULL,
    queue          TEXT NOT NULL,
    status         TEXT NOT NULL DEFAULT 'PENDING'
                   CHECK (status IN ('PENDING', 'STARTED', 'RETRY', 'SUCCESS', 'FAILURE')),
    args           JSONB NOT NULL DEFAULT '{}'::jsonb,
    result         JSONB,
    error          TEXT,
    attempts       INT NOT NULL DEFAULT 0,
    -- Outbox: NULL until the broker confirmed the message. The relay re-publishes rows
    -- that stay PENDING with published_at NULL.
    published_at   TIMESTAMPTZ,
    publish_error  TEXT,
    publish_attempts INT NOT NULL DEFAULT 0,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at     TIMESTAMPTZ,
    finished_at    TIMESTAMPTZ,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX tasks_unpublished_idx ON tasks (created_at) WHERE published_at IS NULL AND status = 'PENDING';
CREATE INDEX tasks_status_created_idx ON tasks (status, created_at);

-- Mined message templates, shared by every worker replica.
CREATE TABLE templates (
    id           BIGSERIAL PRIMARY KEY,
    template_key TEXT NOT NULL UNIQUE,
    template     TEXT NOT NULL,
    count        BIGINT NOT NULL DEFAULT 0,
    first_seen   TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen    TIMESTAMPTZ NOT NULL DEFAULT now(),
    embedding    REAL[],
    label        TEXT CHECK (label IN ('normal', 'anomaly')),
    labelled_at  TIMESTAMPTZ
);

CREATE TABLE pattern_detections (
    id            BIGSERIAL PRIMARY KEY,
    kind          TEXT NOT NULL,
    window_start  TIMESTAMPTZ NOT NULL,
    window_end    TIMESTAMPTZ NOT NULL,
    source        TEXT NOT NULL DEFAULT '',
    severity      TEXT NOT NULL,
    details       JSONB NOT NULL DEFAULT '{}'::jsonb,
    log_entry_ids BIGINT[] NOT NULL DEFAULT '{}',
    task_id       UUID,
    detected_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Re-running the same window must not duplicate detections.
    UNIQUE (kind, source, window_start, window_end)
);
CREATE INDEX pattern_detections_detected_idx ON pattern_detections (detected_at DESC);

CREATE TABLE alerts (
    id                   BIGSERIAL PRIMARY KEY,
    dedup_key            TEXT NOT NULL,
    kind                 TEXT NOT NULL,
    channel              TEXT NOT NULL,
    status               TEXT NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'sent', 'failed', 'suppressed')),
    attempts             INT NOT NULL DEFAULT 0,
    last_error           TEXT,
    payload              JSONB NOT NULL DEFAULT '{}'::jsonb,
    log_entry_id         BIGINT,
    pattern_detection_id BIGINT,
    task_id              UUID,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at              TIMESTAMPTZ
);
CREATE INDEX alerts_dedup_idx ON alerts (dedup_key, channel, created_at DESC);
CREATE INDEX alerts_created_idx ON alerts (created_at DESC);

-- django-celery-beat's periodic tasks: an interval or a cron expression.
CREATE TABLE periodic_tasks (
    id              BIGSERIAL PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    task            TEXT NOT NULL,
    args            JSONB NOT NULL DEFAULT '[]'::jsonb,
    interval_every  INT CHECK (interval_every > 0),
    interval_period TEXT CHECK (interval_period IN ('seconds', 'minutes', 'hours', 'days')),
    cron            TEXT,
    timezone        TEXT NOT NULL DEFAULT 'UTC',
    enabled         BOOLEAN NOT NULL DEFAULT TRUE,
    last_run_at     TIMESTAMPTZ,
    next_run_at     TIMESTAMPTZ,
    total_run_count BIGINT NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((interval_every IS NOT NULL AND interval_period IS NOT NULL AND cron IS NULL)
        OR (interval_every IS NULL AND interval_period IS NULL AND cron IS NOT NULL))
);

-- The old system's two schedules.
INSERT INTO periodic_tasks (name, task, args, interval_every, interval_period) VALUES
    ('Pattern Analysis - 6 hourly', 'logs.tasks.detect_anomaly_patterns', '[24]', 6, 'hours'),
    ('Cleanup old results', 'logs.tasks.cleanup_old_results', '[]', 1, 'days');

-- HMAC secrets beside those in LOGCANARY_HMAC_KEYS, for rotation without a restart.
CREATE TABLE api_keys (
    key_id     TEXT PRIMARY KEY,
    secret     TEXT NOT NULL,
    active     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ
);
