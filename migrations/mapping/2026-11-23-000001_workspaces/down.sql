DROP TABLE outbox;
DROP TABLE workspace_settings;
DROP TABLE workspaces;
