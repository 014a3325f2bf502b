DROP TABLE mapping_errors;
DROP VIEW employee_mappings;
DROP TABLE mappings;
DROP TABLE mapping_settings;
DROP TABLE destination_attributes;
DROP TABLE source_attributes;
