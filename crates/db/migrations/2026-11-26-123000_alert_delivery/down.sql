DROP INDEX IF EXISTS alerts_status_idx;
DROP INDEX IF EXISTS alerts_task_channel_idx;
