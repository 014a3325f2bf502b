DROP TABLE source_versions;
DROP TABLE webhook_event_counts;
DROP TABLE fyle_sync_state;
DROP TABLE expense_attributes;
