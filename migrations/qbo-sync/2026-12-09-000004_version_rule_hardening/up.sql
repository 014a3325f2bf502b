-- A row turned inactive here (a QBO Delete or Merge, an id QBO no longer returns) rather than
-- from a QBO copy: only a copy strictly newer than the stored stamp may bring it back, so a
-- pull page read before the delete (same stamp) cannot reactivate it.
ALTER TABLE destination_attributes
    ADD COLUMN locally_deactivated BOOLEAN NOT NULL DEFAULT false;

-- One pending row per change kind of an entity: a burst of webhooks for the same id (or an
-- outage's worth of repeats) keeps one row, not one per delivery.
DELETE FROM qbo_pending_changes p USING qbo_pending_changes q
 WHERE p.realm_id = q.realm_id AND p.workspace_id = q.workspace_id
   AND p.qbo_entity = q.qbo_entity AND p.entity_id = q.entity_id
   AND p.operation = q.operation AND coalesce(p.deleted_id, '') = coalesce(q.deleted_id, '')
   AND p.id > q.id;
CREATE UNIQUE INDEX qbo_pending_changes_one_per_change ON qbo_pending_changes
    (realm_id, workspace_id, qbo_entity, entity_id, operation, coalesce(deleted_id, ''));

-- The company a workspace's rows came from: when mapping moves the workspace to another realm,
-- what the old company's ids meant is retired before the new company is pulled (crate::realm).
ALTER TABLE qbo_workspace_sync ADD COLUMN realm_id TEXT;
