-- ListExpenseAttributes pages by id within a workspace (optionally a type): an index that
-- serves `WHERE workspace_id = ? [AND attribute_type = ?] AND id > ? ORDER BY id LIMIT n`.
CREATE INDEX expense_attributes_listing ON expense_attributes (workspace_id, attribute_type, id);
CREATE INDEX expense_attributes_changed ON expense_attributes (workspace_id, updated_at);
