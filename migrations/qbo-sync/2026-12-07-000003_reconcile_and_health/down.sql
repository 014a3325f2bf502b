DROP TABLE webhook_health;
ALTER TABLE qbo_sync_state
    DROP COLUMN last_run,
    DROP COLUMN last_run_missed,
    DROP COLUMN last_run_deferred,
    ADD COLUMN webhook_health TEXT NOT NULL DEFAULT 'HEALTHY' CHECK (webhook_health IN ('HEALTHY', 'DEGRADED')),
    ADD COLUMN clean_windows INTEGER NOT NULL DEFAULT 0;
