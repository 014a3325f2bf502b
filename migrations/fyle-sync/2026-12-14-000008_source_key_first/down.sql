ALTER TABLE expense_attributes
    DROP CONSTRAINT expense_attributes_source_key,
    ADD CONSTRAINT expense_attributes_workspace_id_attribute_type_source_id_key
        UNIQUE (workspace_id, attribute_type, source_id);
