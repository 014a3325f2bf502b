DROP TABLE fyle_subscriptions;
DROP TABLE webhook_health;
ALTER TABLE fyle_sync_state
    DROP COLUMN last_run,
    DROP COLUMN last_run_at,
    DROP COLUMN last_run_rows,
    DROP COLUMN last_run_changed,
    DROP COLUMN last_run_deleted,
    DROP COLUMN last_run_missed,
    ADD COLUMN webhook_health TEXT NOT NULL DEFAULT 'HEALTHY' CHECK (webhook_health IN ('HEALTHY', 'DEGRADED'));
