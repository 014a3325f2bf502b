DROP TABLE fyle_connections;
