-- Auto-mapping's inputs: mapping's own projections of both sides, fed by
-- sync.expense-attributes.v1 (fyle-sync) and sync.destination-attributes.v1 (qbo-sync).
-- Keyed by id, never by value: a rename updates the row in place. `event_at` is the
-- envelope's occurred_at of the event that last wrote the row; an older event changes nothing.
CREATE TABLE source_attributes (
    workspace_id   BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    attribute_type TEXT NOT NULL,
    source_id      TEXT NOT NULL,
    value          TEXT NOT NULL,
    display_name   TEXT NOT NULL DEFAULT '',
    active         BOOLEAN NOT NULL,
    detail         JSONB,
    event_at       TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, attribute_type, source_id)
);
CREATE INDEX source_attributes_value ON source_attributes (workspace_id, attribute_type, lower(value));

-- qbo-sync's identity: accounts and items share ACCOUNT and two id sequences, so the display
-- name ('Account' / 'Item') is part of the key.
CREATE TABLE destination_attributes (
    workspace_id   BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    attribute_type TEXT NOT NULL,
    display_name   TEXT NOT NULL,
    destination_id TEXT NOT NULL,
    value          TEXT NOT NULL,
    code           TEXT,
    active         BOOLEAN NOT NULL,
    detail         JSONB,
    event_at       TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, attribute_type, display_name, destination_id)
);
CREATE INDEX destination_attributes_value
    ON destination_attributes (workspace_id, attribute_type, lower(value));
CREATE INDEX destination_attributes_id
    ON destination_attributes (workspace_id, attribute_type, destination_id);

-- Which Fyle field maps to which QBO field (incumbent MappingSetting). Written by the
-- import-settings API (a later part of issue 11); read by auto-mapping. A workspace with no
-- rows uses the incumbent's defaults (see services/mapping/src/automap.rs).
CREATE TABLE mapping_settings (
    workspace_id       BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    source_field       TEXT NOT NULL,
    destination_field  TEXT NOT NULL,
    import_to_fyle     BOOLEAN NOT NULL DEFAULT false,
    is_custom          BOOLEAN NOT NULL DEFAULT false,
    source_placeholder TEXT,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, destination_field)
);

-- Every mapping, generic and employee alike: at most one destination per source and
-- destination type (the incumbent's unique key). An employee's QBO employee, vendor and card
-- account are three rows (destination types EMPLOYEE, VENDOR, CREDIT_CARD_ACCOUNT); the view
-- employee_mappings shows them in the incumbent's one-row shape. `destination_value` is the
-- destination's value when the mapping was made: a later rename flags the mapping.
CREATE TABLE mappings (
    id                       BIGSERIAL PRIMARY KEY,
    workspace_id             BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    source_type              TEXT NOT NULL,
    source_id                TEXT NOT NULL,
    destination_type         TEXT NOT NULL,
    destination_display_name TEXT NOT NULL,
    destination_id           TEXT NOT NULL,
    destination_value        TEXT NOT NULL,
    auto_mapped              BOOLEAN NOT NULL,
    created_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, source_type, source_id, destination_type)
);
CREATE INDEX mappings_destination
    ON mappings (workspace_id, destination_type, destination_display_name, destination_id);

CREATE VIEW employee_mappings AS
SELECT workspace_id,
       source_id AS source_employee_id,
       max(destination_id) FILTER (WHERE destination_type = 'EMPLOYEE') AS destination_employee_id,
       max(destination_id) FILTER (WHERE destination_type = 'VENDOR') AS destination_vendor_id,
       max(destination_id) FILTER (WHERE destination_type = 'CREDIT_CARD_ACCOUNT')
           AS destination_card_account_id,
       bool_or(auto_mapped) AS auto_mapped,
       min(created_at) AS created_at,
       max(updated_at) AS updated_at
FROM mappings
WHERE source_type = 'EMPLOYEE'
GROUP BY workspace_id, source_id;

-- Attributes an export could not map (reported by the export pipeline). One row per
-- workspace × error type × source; a report of a resolved error reopens it. Resolved in the
-- transaction that writes a mapping able to resolve it, whatever wrote it.
CREATE TABLE mapping_errors (
    id                     BIGSERIAL PRIMARY KEY,
    workspace_id           BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    error_type             TEXT NOT NULL,
    source_type            TEXT NOT NULL,
    source_id              TEXT NOT NULL,
    source_value           TEXT NOT NULL,
    -- '' = any mapping of the source resolves it (EMPLOYEE: an EMPLOYEE or VENDOR mapping).
    destination_type       TEXT NOT NULL DEFAULT '',
    occurrences            INTEGER NOT NULL DEFAULT 1,
    is_resolved            BOOLEAN NOT NULL DEFAULT false,
    resolved_at            TIMESTAMPTZ,
    resolved_by_mapping_id BIGINT,
    created_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, error_type, source_type, source_id)
);
CREATE INDEX mapping_errors_open
    ON mapping_errors (workspace_id, source_type, source_id) WHERE NOT is_resolved;
