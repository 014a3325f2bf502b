ALTER TABLE mappings DROP COLUMN IF EXISTS auto_created;
