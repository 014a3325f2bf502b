DROP TABLE outbox_rejected;
