-- One alert row per task and channel: a redelivered alert task finds the rows it wrote
-- instead of recording (and sending) the alert again. NULL task ids stay distinct.
CREATE UNIQUE INDEX alerts_task_channel_idx ON alerts (task_id, channel);
-- GET /api/alerts/ filtered by status, newest first.
CREATE INDEX alerts_status_idx ON alerts (status, id DESC);
