-- Scheduled reconciles and webhook health (qbo_sync::reconcile, attrsync_kafka::webhook_health).

-- Webhook health is a workspace's, not an entity's: one window is one reconcile round over
-- every entity in webhook mode. The per-entity columns never held anything but their defaults.
ALTER TABLE qbo_sync_state
    DROP COLUMN webhook_health,
    DROP COLUMN clean_windows,
    -- What the last pass of an entity did, whichever path ran it.
    ADD COLUMN last_run          TEXT CHECK (last_run IN ('FULL', 'INCREMENTAL', 'RECONCILE', 'RECONCILE_FULL')),
    ADD COLUMN last_run_missed   INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN last_run_deferred INTEGER NOT NULL DEFAULT 0;

-- Per workspace: its reconcile schedule and webhook health. The shape is the one
-- attrsync_kafka::webhook_health reads and writes (fyle-sync has the same table in its schema).
-- A row appears with the first scheduled round; a workspace without one is HEALTHY and has
-- never been reconciled.
CREATE TABLE webhook_health (
    workspace_id       BIGINT PRIMARY KEY,
    state              TEXT NOT NULL DEFAULT 'HEALTHY' CHECK (state IN ('HEALTHY', 'DEGRADED')),
    -- Consecutive windows without a missed webhook, ending with the last one.
    clean_windows      INTEGER NOT NULL DEFAULT 0,
    -- The last window (a round that judged at least one entity in webhook mode).
    last_window_at     TIMESTAMPTZ,
    last_window_missed BIGINT NOT NULL DEFAULT 0,
    missed_total       BIGINT NOT NULL DEFAULT 0,
    changed_at         TIMESTAMPTZ,
    -- The last scheduled round, window or not: the next is due an interval after it.
    last_round_at      TIMESTAMPTZ
);
CREATE INDEX webhook_health_state ON webhook_health (state);
