ALTER TABLE qbo_workspace_sync DROP COLUMN realm_id;
DROP INDEX qbo_pending_changes_one_per_change;
ALTER TABLE destination_attributes DROP COLUMN locally_deactivated;
