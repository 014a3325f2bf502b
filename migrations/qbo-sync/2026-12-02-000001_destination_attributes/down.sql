DROP TABLE qbo_pending_changes;
DROP TABLE qbo_merges;
DROP TABLE qbo_attribute_counts;
DROP TABLE qbo_workspace_sync;
DROP TABLE qbo_sync_state;
DROP TABLE qbo_credentials;
DROP TABLE destination_attributes;
