-- Incidents the notifier keeps open on channels that track them (Alertmanager, PagerDuty):
-- one row per dedup key and channel while the alert keeps firing. Every alert of the key
-- (sent or suppressed by the cooldown) moves last_seen_at; the notifier re-posts open
-- incidents to Alertmanager every LOGCANARY_ALERTMANAGER_REPOST_SECS (posted_at) and sends
-- their end once last_seen_at is LOGCANARY_INCIDENT_RESOLVE_SECS old (resolved_at). The
-- lease lets one of several notifier replicas post an incident at a time.
CREATE TABLE incidents (
    id BIGSERIAL PRIMARY KEY,
    dedup_key TEXT NOT NULL,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    -- The alert that opened the incident (the notifier's AlertItem): its labels are the
    -- incident's, on every re-post and on the end.
    payload JSONB NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Last time the incident went out as firing; NULL: it must go out again (an end was
    -- sent while a new alert of the key arrived).
    posted_at TIMESTAMPTZ DEFAULT now(),
    -- When the end was delivered (or refused for good, with last_error); NULL while open.
    resolved_at TIMESTAMPTZ,
    lease_until TIMESTAMPTZ,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
-- At most one open incident per key and channel; the upsert of every alert finds it.
CREATE UNIQUE INDEX incidents_open_idx ON incidents (dedup_key, channel) WHERE resolved_at IS NULL;
-- The sweep: open incidents by channel and age.
CREATE INDEX incidents_sweep_idx ON incidents (channel, last_seen_at) WHERE resolved_at IS NULL;
