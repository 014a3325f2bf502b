-- The import-settings API (UpdateImportSettings) writes mapping_settings; these are what it
-- needs to know besides them.

-- Which Fyle fields import-to-fyle has run an import of, from its ImportCompleted events on
-- imports.events.v1: a category import fixes the code-prefix choice (#39: "Cannot change the
-- code fields once they are imported"). `last_event_at` is the envelope time of the newest
-- event applied; an older one changes nothing.
CREATE TABLE field_imports (
    workspace_id   BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    source_field   TEXT NOT NULL,
    first_run_at   TIMESTAMPTZ NOT NULL,
    last_status    TEXT NOT NULL,
    last_event_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (workspace_id, source_field)
);

-- One setting per source field too: a Fyle field maps to one QBO field (auto-mapping and the
-- imports read it so); the API refuses a request naming a source twice.
CREATE UNIQUE INDEX mapping_settings_source ON mapping_settings (workspace_id, source_field);
