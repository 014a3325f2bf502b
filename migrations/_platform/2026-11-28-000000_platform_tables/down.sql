DROP TABLE IF EXISTS workspace_projection;
DROP TABLE IF EXISTS processed_events;
DROP TABLE IF EXISTS outbox_rejected;
DROP TABLE IF EXISTS outbox;
