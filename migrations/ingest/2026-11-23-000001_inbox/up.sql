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
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX inbox_workspace ON inbox (workspace_id, received_at);

-- Projection of the workspace registry (see attrsync_kafka::workspaces).
CREATE TABLE workspace_projection (
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
CREATE INDEX workspace_projection_org ON workspace_projection (fyle_org_id);

-- Transactional outbox (see attrsync_db::outbox).
CREATE TABLE outbox (
    id          BIGSERIAL PRIMARY KEY,
    topic       TEXT NOT NULL,
    message_key TEXT,
    payload     BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
