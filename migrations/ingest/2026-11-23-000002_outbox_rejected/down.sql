DROP INDEX workspace_projection_realm;
ALTER TABLE inbox DROP COLUMN duplicates;
DROP TABLE outbox_rejected;
