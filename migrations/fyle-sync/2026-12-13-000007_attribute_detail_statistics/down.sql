ALTER TABLE expense_attributes ALTER COLUMN detail SET STATISTICS -1;
