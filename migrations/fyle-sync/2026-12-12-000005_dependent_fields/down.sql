DROP TABLE dependent_fields;
