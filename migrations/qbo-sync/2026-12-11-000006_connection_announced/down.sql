DROP TABLE IF EXISTS qbo_connection_announced;
