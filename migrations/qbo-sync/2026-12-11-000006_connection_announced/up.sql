-- The connection state last announced to each workspace (ConnectionStatusChanged on
-- sync.connections.v1): a QBO company's credentials are shared by its workspaces, but each
-- workspace hears of each change of its own state once — a workspace that joins a company
-- already connected, or moves to another company, hears CONNECTED from UNSPECIFIED.
CREATE TABLE qbo_connection_announced (
    workspace_id BIGINT PRIMARY KEY,
    realm_id     TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('CONNECTED', 'BROKEN')),
    announced_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
