DROP TABLE outbox;
DROP TABLE workspace_projection;
DROP TABLE inbox;
