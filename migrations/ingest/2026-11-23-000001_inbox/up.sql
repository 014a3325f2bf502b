-- Every accepted webhook, durably, before it is answered. The dedupe key is unique, so a
-- redelivered webhook is recognised and not published twice.
CREATE TABLE inbox (
    id           BIGSERIAL PRIMARY KEY,
    -- The delivery's id, carried to consumers (ULID).
    delivery_id  TEXT NOT NULL UNIQUE,
    dedupe_key   TEXT NOT NULL UNIQUE,
    source       TEXT NOT NULL CHECK (source IN ('fyle', 'qbo')),
    workspace_id BIGINT,
    action       TEXT NOT NULL,
    resource     TEXT,
    -- PUBLISHED (handed to the outbox), SKIPPED (webhook sync off), IGNORED (nobody consumes it).
    disposition  TEXT NOT NULL CHECK (disposition IN ('PUBLISHED', 'SKIPPED', 'IGNORED')),
    topic        TEXT,
    body         JSONB NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Repeated deliveries of the same webhook, counted on the first one's row.
    duplicates   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX inbox_workspace ON inbox (workspace_id, received_at);
-- The retention job deletes rows past the dedupe window, oldest first.
CREATE INDEX inbox_age ON inbox (received_at);
