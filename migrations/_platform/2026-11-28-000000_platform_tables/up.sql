-- The tables every service has in its own schema, defined once (attrsync_db::PLATFORM_MIGRATIONS)
-- and applied before the service's own migrations. `IF NOT EXISTS` keeps schemas created before
-- these tables moved here working.

-- Transactional outbox (see attrsync_db::outbox). `headers` carries the trace context and the
-- event id as Kafka headers, so the relay never decodes a payload.
CREATE TABLE IF NOT EXISTS outbox (
    id          BIGSERIAL PRIMARY KEY,
    topic       TEXT NOT NULL,
    message_key TEXT,
    payload     BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
ALTER TABLE outbox ADD COLUMN IF NOT EXISTS headers JSONB NOT NULL DEFAULT '{}';

-- Messages Kafka can never take (too large, invalid topic), set aside by the relay so one bad
-- row cannot block the outbox. Operators replay or discard them; the retention job reports them.
CREATE TABLE IF NOT EXISTS outbox_rejected (
    id          BIGINT PRIMARY KEY,
    topic       TEXT NOT NULL,
    message_key TEXT,
    payload     BYTEA NOT NULL,
    error       TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    rejected_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Envelope ids of applied Kafka messages (attrsync_kafka::handler): a redelivery finds its id
-- here and changes nothing. Pruned by the retention job after the topics' retention.
CREATE TABLE IF NOT EXISTS processed_events (
    event_id     TEXT PRIMARY KEY,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS processed_events_age ON processed_events (processed_at);

-- The service's projection of the workspace registry (attrsync_kafka::workspaces).
CREATE TABLE IF NOT EXISTS workspace_projection (
    workspace_id              BIGINT PRIMARY KEY,
    fyle_org_id               TEXT NOT NULL,
    qbo_realm_id              TEXT,
    fyle_webhook_sync_enabled BOOLEAN NOT NULL,
    fyle_webhook_by_type      JSONB NOT NULL,
    qbo_webhook_sync_enabled  BOOLEAN NOT NULL,
    qbo_webhook_by_entity     JSONB NOT NULL,
    deleted                   BOOLEAN NOT NULL DEFAULT false,
    version                   BIGINT NOT NULL,
    snapshot                  BYTEA NOT NULL,
    updated_at                TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS workspace_projection_org ON workspace_projection (fyle_org_id);
CREATE INDEX IF NOT EXISTS workspace_projection_realm ON workspace_projection (qbo_realm_id)
    WHERE qbo_realm_id IS NOT NULL;
