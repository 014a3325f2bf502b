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
