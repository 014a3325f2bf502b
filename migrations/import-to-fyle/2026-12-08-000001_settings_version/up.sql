-- The newest workspace snapshot version a pending request was decided on (mapping's
-- ImportRequested.settings_version): its run waits until the projection has reached it.
ALTER TABLE import_requests ADD COLUMN settings_version BIGINT NOT NULL DEFAULT 0;

-- Fyle values a run must disable (disable_items, #59), by Fyle id, until a run has posted
-- them: durable, so a failed or coalesced run loses none.
CREATE TABLE import_disables (
    workspace_id  BIGINT NOT NULL,
    source_field  TEXT NOT NULL,
    source_id     TEXT NOT NULL,
    requested_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, source_field, source_id)
);
