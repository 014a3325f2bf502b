-- QBO employees and vendors to create (or link) for Fyle values, when the workspace's import
-- settings ask for it. The sync.expense-attributes.v1 consumer only records a request here (in
-- its idempotent transaction: no HTTP inside a transaction); qbo-sync's auto-create task serves
-- a realm's due rows under a lease, outside transactions: look the name up in QBO, create it
-- otherwise (with `request_id`, derived from workspace + entity + name, so a repeat is answered,
-- not applied twice), then stores the destination attribute, publishes the events and deletes
-- the row in one transaction. A transient failure pushes `not_before` back; a refusal that a
-- repeat cannot fix (the name is taken by another list or an inactive record, QBO rejects it)
-- leaves the row FAILED with its reason, for operators.
CREATE TABLE qbo_pending_creates (
    id                    BIGSERIAL PRIMARY KEY,
    workspace_id          BIGINT NOT NULL,
    realm_id              TEXT NOT NULL,
    qbo_entity            TEXT NOT NULL CHECK (qbo_entity IN ('Employee', 'Vendor')),
    display_name          TEXT NOT NULL,
    email                 TEXT,
    source_attribute_type TEXT NOT NULL,
    source_id             TEXT NOT NULL,
    source_value          TEXT NOT NULL,
    request_id            TEXT NOT NULL,
    status                TEXT NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'FAILED')),
    attempts              INTEGER NOT NULL DEFAULT 0,
    last_error            TEXT,
    not_before            TIMESTAMPTZ NOT NULL DEFAULT now(),
    received_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- One waiting request per name: a second event for the same value while the first waits adds
-- nothing (QBO names are unique case-insensitively).
CREATE UNIQUE INDEX qbo_pending_creates_one_per_name
    ON qbo_pending_creates (workspace_id, qbo_entity, lower(display_name)) WHERE status = 'PENDING';
CREATE INDEX qbo_pending_creates_due ON qbo_pending_creates (realm_id, not_before) WHERE status = 'PENDING';
