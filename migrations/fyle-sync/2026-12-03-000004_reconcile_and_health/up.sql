-- Scheduled reconciles and webhook health (fyle_sync::schedule, attrsync_core::webhook_health).

-- Webhook health is a workspace's, not a resource's: one window is one reconcile round over
-- every resource in webhook mode. The per-resource column never held anything but the default.
ALTER TABLE fyle_sync_state DROP COLUMN webhook_health;

-- What the last pull of a resource did, whichever path ran it.
ALTER TABLE fyle_sync_state
    ADD COLUMN last_run         TEXT CHECK (last_run IN ('FULL', 'INCREMENTAL', 'RECONCILE', 'RECONCILE_FULL')),
    ADD COLUMN last_run_at      TIMESTAMPTZ,
    ADD COLUMN last_run_rows    INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN last_run_changed INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN last_run_deleted INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN last_run_missed  INTEGER NOT NULL DEFAULT 0;

-- Per workspace: its reconcile schedule and webhook health. A row appears with the first
-- scheduled round; a workspace without one is HEALTHY and has never been reconciled.
CREATE TABLE webhook_health (
    workspace_id       BIGINT PRIMARY KEY,
    state              TEXT NOT NULL DEFAULT 'HEALTHY' CHECK (state IN ('HEALTHY', 'DEGRADED')),
    -- Consecutive windows without a missed webhook, ending with the last one.
    clean_windows      INTEGER NOT NULL DEFAULT 0,
    -- The last window (a round that reconciled at least one resource in webhook mode).
    last_window_at     TIMESTAMPTZ,
    last_window_missed BIGINT NOT NULL DEFAULT 0,
    missed_total       BIGINT NOT NULL DEFAULT 0,
    changed_at         TIMESTAMPTZ,
    -- The last scheduled round, window or not: the next is due an interval after it.
    last_round_at      TIMESTAMPTZ
);
CREATE INDEX webhook_health_state ON webhook_health (state);

-- The Fyle webhook subscription registered for a workspace (ConnectFyle, retried by the
-- scheduler while PENDING). Its URL carries ingest's secret token, so it is not kept here:
-- it is asked of ingest at every attempt.
CREATE TABLE fyle_subscriptions (
    workspace_id    BIGINT PRIMARY KEY,
    status          TEXT NOT NULL CHECK (status IN ('PENDING', 'REGISTERED')),
    subscription_id TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    registered_at   TIMESTAMPTZ,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX fyle_subscriptions_pending ON fyle_subscriptions (next_attempt_at) WHERE status = 'PENDING';
