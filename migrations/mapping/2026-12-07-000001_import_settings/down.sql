DROP INDEX mapping_settings_source;
DROP TABLE field_imports;
