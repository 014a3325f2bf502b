-- The rules a workspace's accounts and items were last pulled under (see
-- services/qbo-sync/src/rules_watch.rs): a settings change that alters them (chart of
-- accounts, items, category naming) re-pulls the entity at once.
CREATE TABLE qbo_rules_seen (
    workspace_id  BIGINT NOT NULL,
    qbo_entity    TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, qbo_entity)
);
