DROP TABLE import_schedules;
