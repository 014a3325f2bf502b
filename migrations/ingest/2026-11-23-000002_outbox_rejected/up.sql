-- Messages Kafka can never take (too large, invalid topic), set aside by the outbox relay so
-- one bad row cannot block the outbox (see attrsync_db::outbox). Operators replay or discard.
CREATE TABLE outbox_rejected (
    id          BIGINT PRIMARY KEY,
    topic       TEXT NOT NULL,
    message_key TEXT,
    payload     BYTEA NOT NULL,
    error       TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    rejected_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Repeated deliveries of the same webhook, counted on the first one's row.
ALTER TABLE inbox ADD COLUMN duplicates INTEGER NOT NULL DEFAULT 0;

CREATE INDEX workspace_projection_realm ON workspace_projection (qbo_realm_id) WHERE qbo_realm_id IS NOT NULL;
