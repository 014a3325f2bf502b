DROP INDEX workspace_projection_realm;
DROP TABLE outbox_rejected;
