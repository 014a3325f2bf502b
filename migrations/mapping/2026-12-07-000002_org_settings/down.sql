ALTER TABLE workspaces DROP COLUMN org_settings, DROP COLUMN org_settings_at;
