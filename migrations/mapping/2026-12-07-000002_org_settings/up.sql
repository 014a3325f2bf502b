-- The Fyle org's settings from its ORG_SETTING webhooks (incumbent Workspace.org_settings,
-- `{"regional_settings": …}`), and the ingest time of the webhook that set them: an older one
-- arriving late changes nothing.
ALTER TABLE workspaces
    ADD COLUMN org_settings    JSONB NOT NULL DEFAULT '{}',
    ADD COLUMN org_settings_at TIMESTAMPTZ;
