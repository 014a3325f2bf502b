-- QBO-side attribute values, one row per workspace × QBO entity × QBO id × attribute type.
-- A rename in QBO updates the row (the id is the identity, never the name). `qbo_entity` keeps
-- Accounts and Items apart (both become ACCOUNT rows and their ids are separate sequences in
-- QBO) and lets one QBO Account yield two rows ('Other Current Liability' is a chart type and a
-- bank-account type).
CREATE TABLE destination_attributes (
    id             BIGSERIAL PRIMARY KEY,
    workspace_id   BIGINT NOT NULL,
    attribute_type TEXT NOT NULL,
    display_name   TEXT NOT NULL,
    qbo_entity     TEXT NOT NULL,
    destination_id TEXT NOT NULL,
    value          TEXT NOT NULL,
    code           TEXT,
    active         BOOLEAN NOT NULL,
    detail         JSONB NOT NULL DEFAULT '{}'::jsonb,
    -- qbo_sync::rules content hash of (value, code, active, detail): no-op writes are skipped.
    content_hash   TEXT NOT NULL,
    auto_created   BOOLEAN NOT NULL DEFAULT false,
    -- QBO's MetaData.LastUpdatedTime and SyncToken of the copy stored: an older copy (a pull
    -- page read before a webhook's fetch) never overwrites a newer one.
    qbo_updated_at TIMESTAMPTZ,
    sync_token     TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, qbo_entity, destination_id, attribute_type)
);
-- ListDestinationAttributes: keyset pages by id within a workspace (and type).
CREATE INDEX destination_attributes_listing ON destination_attributes (workspace_id, attribute_type, id);
CREATE INDEX destination_attributes_value ON destination_attributes (workspace_id, attribute_type, lower(value));

-- One QBO connection per company (realm): the workspaces connected to a realm share its tokens,
-- so one fetch serves them all and one writer rotates its refresh token. The refresh token
-- rotates on every refresh: it is sealed (AES-256-GCM, attrsync_core::sealed) and replaced only
-- under a row lock after checking it is still the one refreshed with (compare-and-swap), so two
-- replicas refreshing at once never lose it. The access token is cached sealed too, so replicas
-- share it instead of each refreshing. EXPIRED (Intuit answered invalid_grant) stops every call
-- for the realm until ConnectQbo is called again.
CREATE TABLE qbo_credentials (
    realm_id           TEXT PRIMARY KEY,
    company_name       TEXT,
    key_id             TEXT NOT NULL,
    refresh_nonce      BYTEA NOT NULL,
    refresh_sealed     BYTEA NOT NULL,
    refresh_expires_at TIMESTAMPTZ,
    generation         BIGINT NOT NULL DEFAULT 1,
    access_nonce       BYTEA,
    access_sealed      BYTEA,
    access_expires_at  TIMESTAMPTZ,
    status             TEXT NOT NULL CHECK (status IN ('CONNECTED', 'EXPIRED')),
    status_reason      TEXT,
    connected_by       BIGINT NOT NULL,
    connected_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    status_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Per workspace × QBO entity: watermarks, runs, the last outcome, webhook health.
CREATE TABLE qbo_sync_state (
    workspace_id             BIGINT NOT NULL,
    qbo_entity               TEXT NOT NULL,
    watermark                TIMESTAMPTZ,
    last_full_sync_at        TIMESTAMPTZ,
    last_incremental_sync_at TIMESTAMPTZ,
    last_reconcile_at        TIMESTAMPTZ,
    last_attempt_at          TIMESTAMPTZ,
    last_outcome             TEXT,
    webhook_health           TEXT NOT NULL DEFAULT 'HEALTHY' CHECK (webhook_health IN ('HEALTHY', 'DEGRADED')),
    clean_windows            INTEGER NOT NULL DEFAULT 0,
    missed_webhooks          BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, qbo_entity)
);

-- Per workspace: when QBO was last pulled in full (the 24-hour rule, incumbent #34).
CREATE TABLE qbo_workspace_sync (
    workspace_id          BIGINT PRIMARY KEY,
    destination_synced_at TIMESTAMPTZ
);

-- Active counts per workspace × entity, stored on every attempt (incumbent #29), even when the
-- size limit then skips the sync.
CREATE TABLE qbo_attribute_counts (
    workspace_id BIGINT NOT NULL,
    qbo_entity   TEXT NOT NULL,
    active_count BIGINT NOT NULL,
    counted_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, qbo_entity)
);

-- QBO merges (webhook operation Merge): the id merged away and the one that survives it.
CREATE TABLE qbo_merges (
    workspace_id BIGINT NOT NULL,
    qbo_entity   TEXT NOT NULL,
    merged_id    TEXT NOT NULL,
    surviving_id TEXT NOT NULL,
    merged_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, qbo_entity, merged_id)
);

-- QBO webhook changes waiting for their targeted fetch. The consumer only records them (fast,
-- in its idempotent transaction, no HTTP inside a transaction); the fetcher takes a realm's
-- pending rows after a short coalescing window, fetches each entity type once for every
-- workspace sharing the realm, applies the results and deletes exactly the rows it served, in
-- one transaction. Rows survive crashes and QBO outages and are retried.
CREATE TABLE qbo_pending_changes (
    id           BIGSERIAL PRIMARY KEY,
    realm_id     TEXT NOT NULL,
    workspace_id BIGINT NOT NULL,
    qbo_entity   TEXT NOT NULL,
    entity_id    TEXT NOT NULL,
    operation    TEXT NOT NULL,
    deleted_id   TEXT,
    last_updated TIMESTAMPTZ,
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts     INTEGER NOT NULL DEFAULT 0,
    not_before   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX qbo_pending_changes_realm ON qbo_pending_changes (realm_id, id);
