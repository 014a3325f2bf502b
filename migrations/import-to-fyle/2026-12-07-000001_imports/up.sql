-- QBO values as import-to-fyle knows them, from sync.destination-attributes.v1 (qbo-sync owns
-- the originals). One row per workspace × type × display name × QBO id; `version` is the
-- change event's time, so a redelivered or late event never overwrites a newer one.
-- `changed_at` (this database's clock) is what incremental runs select by.
CREATE TABLE import_destination_attributes (
    workspace_id    BIGINT NOT NULL,
    attribute_type  TEXT NOT NULL,
    display_name    TEXT NOT NULL,
    destination_id  TEXT NOT NULL,
    value           TEXT NOT NULL,
    code            TEXT,
    active          BOOLEAN NOT NULL,
    detail          JSONB NOT NULL DEFAULT 'null',
    -- The name (and code) before the last rename, kept until a later change replaces it.
    renamed_from       TEXT,
    renamed_from_code  TEXT,
    version         TIMESTAMPTZ NOT NULL,
    changed_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, attribute_type, display_name, destination_id)
);
CREATE INDEX import_destination_attributes_changed
    ON import_destination_attributes (workspace_id, attribute_type, changed_at);
CREATE INDEX import_destination_attributes_value
    ON import_destination_attributes (workspace_id, attribute_type, lower(value));

-- Imports waiting for the runner: one row per workspace × source field, so a burst of changes
-- coalesces into one run. `full` and `force` only ever widen until the run takes the row.
CREATE TABLE import_requests (
    workspace_id  BIGINT NOT NULL,
    source_field  TEXT NOT NULL,
    full_import   BOOLEAN NOT NULL DEFAULT false,
    force         BOOLEAN NOT NULL DEFAULT false,
    reason        TEXT NOT NULL,
    requested_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    not_before    TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts      INTEGER NOT NULL DEFAULT 0,
    -- Bumped by every new request: a run deletes the row only if no request came meanwhile.
    seq           BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (workspace_id, source_field)
);

-- The incumbent's ImportLog (#36, #51–53), per workspace × source field. A run holds the
-- lease `import:<workspace>:<field>`; IN_PROGRESS here is informational, never a lock.
CREATE TABLE import_logs (
    workspace_id             BIGINT NOT NULL,
    attribute_type           TEXT NOT NULL,
    status                   TEXT NOT NULL,
    error_log                JSONB NOT NULL DEFAULT '[]',
    total_batches_count      INTEGER NOT NULL DEFAULT 0,
    processed_batches_count  INTEGER NOT NULL DEFAULT 0,
    values_posted            INTEGER NOT NULL DEFAULT 0,
    last_outcome             TEXT,
    -- The start of the last successful run: the next incremental run's watermark.
    last_successful_run_at   TIMESTAMPTZ,
    started_at               TIMESTAMPTZ,
    updated_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, attribute_type),
    CHECK (status IN ('IN_PROGRESS', 'COMPLETE', 'FAILED', 'FATAL'))
);
