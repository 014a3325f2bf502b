DROP TABLE import_disables;
ALTER TABLE import_requests DROP COLUMN settings_version;
