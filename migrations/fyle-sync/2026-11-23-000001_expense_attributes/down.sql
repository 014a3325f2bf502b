DROP TABLE outbox;
DROP TABLE workspace_projection;
DROP TABLE processed_events;
DROP TABLE webhook_event_counts;
DROP TABLE fyle_sync_state;
DROP TABLE expense_attributes;
