-- A mapping whose QBO entity qbo-sync created for its Fyle value (sync.fyle-auto-created.v1
-- with `created`): the incumbent's `auto_created` mark, kept on the mapping that joins the two.
ALTER TABLE mappings ADD COLUMN auto_created BOOLEAN NOT NULL DEFAULT false;
