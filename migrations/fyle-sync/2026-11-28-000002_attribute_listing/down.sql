DROP INDEX expense_attributes_changed;
DROP INDEX expense_attributes_listing;
