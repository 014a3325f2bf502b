-- How each workspace's Fyle webhooks are authenticated. A workspace without a row uses the
-- configured default mode (url_token), which refuses everything until a token exists.
CREATE TABLE webhook_auth (
    workspace_id BIGINT PRIMARY KEY,
    mode         TEXT NOT NULL CHECK (mode IN ('url_token', 'hmac', 'org_check_only')),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- URL tokens and HMAC secrets, sealed with AES-256-GCM (attrsync_core::sealed). The current
-- one has no expiry; a rotated-out one stays valid until `valid_until`.
CREATE TABLE webhook_secrets (
    id           BIGSERIAL PRIMARY KEY,
    workspace_id BIGINT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('url_token', 'hmac')),
    key_id       TEXT NOT NULL,
    nonce        BYTEA NOT NULL,
    ciphertext   BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    valid_until  TIMESTAMPTZ
);
CREATE INDEX webhook_secrets_workspace ON webhook_secrets (workspace_id, kind);
