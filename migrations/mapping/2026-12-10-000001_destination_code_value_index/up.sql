-- Auto-mapping looks a Fyle value up among the QBO values of its target type by name OR by
-- `{code}: {name}` (#39). With an index on the name alone, the OR cannot use it and every
-- lookup scanned the workspace's values of the type: 10 ms per Fyle value at 10,000 accounts,
-- 100 s to map a first import. With both, PostgreSQL ORs two index scans.
CREATE INDEX destination_attributes_code_value
    ON destination_attributes (workspace_id, attribute_type, lower(code || ': ' || value));
