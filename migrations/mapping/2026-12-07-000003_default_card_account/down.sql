ALTER TABLE workspace_settings DROP COLUMN default_ccc_account_id;
