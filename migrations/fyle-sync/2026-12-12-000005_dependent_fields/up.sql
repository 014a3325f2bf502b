-- DEPENDENT_SELECT expense fields: what their values (`dependent_expense_field_values`, webhook
-- resource DEPENDENT_FIELD) need to be stored — above all the field's name, which is their
-- attribute type and which a value does not carry. Written under the field's claimed version
-- (`source_versions` key `EXPENSE_FIELD:<id>`) by the expense-field webhook and by the
-- dependent-value pull's field listing.
CREATE TABLE dependent_fields (
    workspace_id      BIGINT NOT NULL,
    field_id          BIGINT NOT NULL,
    field_name        TEXT NOT NULL,
    parent_field_id   BIGINT,
    -- Fyle's values as sent (null stays null), copied into each value's detail.
    placeholder       JSONB NOT NULL,
    is_mandatory      JSONB NOT NULL,
    enabled           BOOLEAN NOT NULL,
    source_updated_at TIMESTAMPTZ,
    PRIMARY KEY (workspace_id, field_id)
);
