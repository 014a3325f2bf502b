-- A workspace's Fyle connection (ConnectFyle): the org and cluster it reaches, the refresh
-- token sealed with AES-256-GCM under the named key (attrsync_core::sealed), and whether it
-- still works. BROKEN (Fyle refused the credentials) stops every call to Fyle for the
-- workspace until ConnectFyle is called again.
CREATE TABLE fyle_connections (
    workspace_id   BIGINT PRIMARY KEY,
    org_id         TEXT NOT NULL,
    cluster_domain TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    nonce          BYTEA NOT NULL,
    ciphertext     BYTEA NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('CONNECTED', 'BROKEN')),
    status_reason  TEXT,
    connected_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    status_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
