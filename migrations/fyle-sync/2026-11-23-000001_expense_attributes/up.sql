-- Fyle-side attribute values. Identified by (workspace, type, source id): a rename in Fyle
-- updates the row instead of adding a second one (the incumbent keys on the value).
CREATE TABLE expense_attributes (
    id                BIGSERIAL PRIMARY KEY,
    workspace_id      BIGINT NOT NULL,
    attribute_type    TEXT NOT NULL,
    display_name      TEXT NOT NULL,
    value             TEXT NOT NULL,
    source_id         TEXT NOT NULL,
    active            BOOLEAN NOT NULL,
    detail            JSONB,
    -- attrsync_core::normalise::content_hash of (value, active, detail): skips no-op writes.
    content_hash      TEXT NOT NULL,
    auto_mapped       BOOLEAN NOT NULL DEFAULT false,
    auto_created      BOOLEAN NOT NULL DEFAULT false,
    -- Fyle's updated_at of the object the value came from; older events are ignored.
    source_updated_at TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, attribute_type, source_id)
);
CREATE INDEX expense_attributes_value ON expense_attributes (workspace_id, attribute_type, lower(value));

-- Per workspace × attribute type: watermarks, pull times and webhook health.
CREATE TABLE fyle_sync_state (
    workspace_id             BIGINT NOT NULL,
    attribute_type           TEXT NOT NULL,
    watermark                TIMESTAMPTZ,
    last_full_sync_at        TIMESTAMPTZ,
    last_incremental_sync_at TIMESTAMPTZ,
    last_reconcile_at        TIMESTAMPTZ,
    webhook_health           TEXT NOT NULL DEFAULT 'HEALTHY' CHECK (webhook_health IN ('HEALTHY', 'DEGRADED')),
    missed_webhooks          BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, attribute_type)
);

-- Webhook events seen per workspace: applied once each, or ignored (stale, nothing to store).
CREATE TABLE webhook_event_counts (
    workspace_id  BIGINT PRIMARY KEY,
    applied       BIGINT NOT NULL DEFAULT 0,
    ignored       BIGINT NOT NULL DEFAULT 0,
    last_event_at TIMESTAMPTZ
);

-- The newest version seen of every Fyle object, deleted or not: its `updated_at` (capped at
-- receive time + the allowed clock skew) and whether it was deleted. An event is applied only
-- if its version is newer (a delete wins a tie), so a late, repeated or reordered event —
-- including one for an object that was deleted before it was ever created here — changes
-- nothing. `object_key` is `<RESOURCE>:<id>` (a custom field's options share their field's).
CREATE TABLE source_versions (
    workspace_id BIGINT NOT NULL,
    object_key   TEXT NOT NULL,
    version      TIMESTAMPTZ NOT NULL,
    deleted      BOOLEAN NOT NULL,
    PRIMARY KEY (workspace_id, object_key)
);
