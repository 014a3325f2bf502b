DROP TABLE qbo_rules_seen;
