DROP TABLE workspace_settings;
DROP TABLE workspaces;
