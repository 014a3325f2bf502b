DROP TABLE import_logs;
DROP TABLE import_requests;
DROP TABLE import_destination_attributes;
