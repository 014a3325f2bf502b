DROP TABLE qbo_pending_creates;
