//! The registry's database operations.
//!
//! Every change runs in one transaction that also bumps the workspace's `version` and puts the
//! new full snapshot in the outbox, so the published snapshots are exactly the committed states,
//! in commit order (see `attrsync_db::outbox`).
//!
//! `UpdateImportSettings` ([`Store::update_import_settings`]) carries out the pure plan of
//! [`crate::import_settings`] in that same transaction: the settings row and the whole set of
//! mapping settings replaced, retargeted sources' auto-made mappings removed and the changed
//! rules auto-mapped afresh (under the workspace's auto-mapping lock, so a consumer batch
//! cannot interleave), the snapshot and the `ImportRequested` commands in the outbox. A refused
//! change (the plan's validation) writes nothing.

use attrsync_core::attribute::normalise_type_name;
use attrsync_db::{DbError, Pool, outbox};
use attrsync_kafka::{envelope, workspaces as own_projection};
use attrsync_proto::{
    Payload, time,
    v1::{
        CreateWorkspaceRequest, ImportRequested, ListWorkspacesRequest, MappingSetting,
        UpdateImportSettingsRequest, UpdateWebhookFlagsRequest, WorkspaceSnapshot,
    },
};
use diesel::{prelude::*, result::DatabaseErrorKind};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::{
    import_settings::{self, ImportCommand, SettingRow},
    mappings,
    schema::{field_imports, mapping_settings, workspace_settings, workspaces},
    snapshot::{SettingsRow, WorkspaceRow, bool_map_to_json, json_to_bool_map, snapshot},
};

/// Why a registry operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("workspace {0} not found")]
    NotFound(i64),
    #[error("Fyle org `{0}` already belongs to a workspace")]
    OrgTaken(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("mapping {0} not found")]
    MappingNotFound(i64),
    /// A mapping names a value mapping's projections do not hold.
    #[error("{0}")]
    UnknownAttribute(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        StoreError::Db(DbError::Query(e))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The registry, bound to mapping's pool and the (prefixed) topics it publishes to.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    settings_topic: String,
    commands_topic: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("settings_topic", &self.settings_topic)
            .field("commands_topic", &self.commands_topic)
            .finish_non_exhaustive()
    }
}

#[derive(Insertable)]
#[diesel(table_name = workspaces)]
struct NewWorkspace<'a> {
    name: &'a str,
    fyle_org_id: &'a str,
    qbo_realm_id: Option<&'a str>,
    fyle_currency: Option<&'a str>,
    cluster_domain: Option<&'a str>,
}

impl Store {
    pub fn new(pool: Pool, settings_topic: String, commands_topic: String) -> Self {
        Self {
            pool,
            settings_topic,
            commands_topic,
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub async fn create_workspace(
        &self,
        request: &CreateWorkspaceRequest,
    ) -> Result<WorkspaceSnapshot> {
        let name = request.name.trim();
        let org = request.fyle_org_id.trim();
        if name.is_empty() {
            return Err(StoreError::Invalid("name must not be empty".into()));
        }
        if org.is_empty() {
            return Err(StoreError::Invalid("fyle_org_id must not be empty".into()));
        }
        let settings = SettingsRow::from_proto(request.settings.as_ref());
        // Mapping settings given at creation follow the update's rules; none given keeps the
        // incumbent's defaults (auto-mapping's DEFAULT_TARGETS), so nothing is stored.
        let submitted = request
            .settings
            .as_ref()
            .map_or(&[][..], |s| s.mapping_settings.as_slice());
        if let Some(import) = request
            .settings
            .as_ref()
            .and_then(|s| s.import_settings.as_ref())
        {
            import_settings::check_lists(import, submitted).map_err(StoreError::Invalid)?;
        }
        let initial_mapping_settings = if submitted.is_empty() {
            Vec::new()
        } else {
            let import = settings.to_proto().import_settings.unwrap_or_default();
            import_settings::plan(&settings, &[], &import, submitted, false)
                .map_err(StoreError::Invalid)?
                .mapping_settings
        };
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let topic = self.settings_topic.clone();
        conn.transaction::<_, StoreError, _>(async |conn| {
            let new = NewWorkspace {
                name,
                fyle_org_id: org,
                qbo_realm_id: request.qbo_realm_id.as_deref().filter(|s| !s.is_empty()),
                fyle_currency: request.fyle_currency.as_deref().filter(|s| !s.is_empty()),
                cluster_domain: request.cluster_domain.as_deref().filter(|s| !s.is_empty()),
            };
            let row: WorkspaceRow = diesel::insert_into(workspaces::table)
                .values(&new)
                .returning(WorkspaceRow::as_returning())
                .get_result(conn)
                .await
                .map_err(|e| match e {
                    diesel::result::Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                        StoreError::OrgTaken(org.to_owned())
                    }
                    other => other.into(),
                })?;
            diesel::insert_into(workspace_settings::table)
                .values((workspace_settings::workspace_id.eq(row.id), &settings))
                .execute(conn)
                .await?;
            replace_mapping_settings(conn, row.id, &[], &initial_mapping_settings).await?;
            let snap = snapshot(&row, &settings, &initial_mapping_settings);
            publish(conn, &topic, &snap).await?;
            Ok(snap)
        })
        .await
    }

    pub async fn get(&self, id: i64) -> Result<WorkspaceSnapshot> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        load(&mut conn, id).await
    }

    /// Keyset-paged list, optionally filtered by Fyle org or QBO realm.
    pub async fn list(
        &self,
        request: &ListWorkspacesRequest,
    ) -> Result<(Vec<WorkspaceSnapshot>, i64)> {
        let page_size = match request.page_size {
            0 => 100,
            n => i64::from(n.min(1000)),
        };
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let mut query = workspaces::table
            .inner_join(workspace_settings::table)
            .filter(workspaces::id.gt(request.after_id))
            .order(workspaces::id)
            .limit(page_size + 1)
            .select((WorkspaceRow::as_select(), SettingsRow::as_select()))
            .into_boxed();
        if let Some(org) = &request.fyle_org_id {
            query = query.filter(workspaces::fyle_org_id.eq(org));
        }
        if let Some(realm) = &request.qbo_realm_id {
            query = query.filter(workspaces::qbo_realm_id.eq(realm));
        }
        let mut rows: Vec<(WorkspaceRow, SettingsRow)> = query.load(&mut conn).await?;
        let more = rows.len() as i64 > page_size;
        rows.truncate(page_size as usize);
        let next = if more {
            rows.last().map_or(0, |(w, _)| w.id)
        } else {
            0
        };
        let ids: Vec<i64> = rows.iter().map(|(w, _)| w.id).collect();
        let mut by_workspace = load_mapping_settings(&mut conn, &ids).await?;
        let snapshots = rows
            .iter()
            .map(|(w, s)| snapshot(w, s, &by_workspace.remove(&w.id).unwrap_or_default()))
            .collect();
        Ok((snapshots, next))
    }

    /// Writes `workspace_projection` rows for workspaces created before mapping kept them (or
    /// missed by any other path): each row only if the projection's version is older.
    pub async fn backfill_projection(&self) -> Result<usize> {
        let mut after_id = 0;
        let mut written = 0;
        loop {
            let (page, next) = self
                .list(&ListWorkspacesRequest {
                    after_id,
                    page_size: 1000,
                    ..Default::default()
                })
                .await?;
            let mut conn = self.pool.get().await.map_err(DbError::from)?;
            for snap in &page {
                if let Some(row) = own_projection::ProjectedWorkspace::from_snapshot(snap)
                    && own_projection::apply(&mut conn, &row).await?
                {
                    written += 1;
                }
            }
            if next == 0 {
                return Ok(written);
            }
            after_id = next;
        }
    }

    pub async fn update_webhook_flags(
        &self,
        request: &UpdateWebhookFlagsRequest,
    ) -> Result<WorkspaceSnapshot> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let topic = self.settings_topic.clone();
        conn.transaction::<_, StoreError, _>(async |conn| {
            let mut settings: SettingsRow = workspace_settings::table
                .find(request.workspace_id)
                .select(SettingsRow::as_select())
                .for_update()
                .first(conn)
                .await
                .optional()?
                .ok_or(StoreError::NotFound(request.workspace_id))?;
            apply_flag_changes(&mut settings, request);
            diesel::update(workspace_settings::table.find(request.workspace_id))
                .set((
                    &settings,
                    workspace_settings::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?;
            bump_version(conn, request.workspace_id).await?;
            let snap = load(conn, request.workspace_id).await?;
            publish(conn, &topic, &snap).await?;
            Ok(snap)
        })
        .await
    }
}

impl Store {
    /// The workspace's mapping settings, ordered by destination field.
    pub async fn list_mapping_settings(&self, workspace_id: i64) -> Result<Vec<MappingSetting>> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let snap = load(&mut conn, workspace_id).await?;
        Ok(snap
            .settings
            .map(|s| s.mapping_settings)
            .unwrap_or_default())
    }

    /// The custom mapping settings `request` would add (or change) that import to Fyle: the
    /// API imports each before saving (#64). Validates as the update does (a refusal here
    /// saves nothing and calls nothing); reads without locks — the update plans again.
    pub async fn custom_imports(
        &self,
        request: &UpdateImportSettingsRequest,
    ) -> Result<Vec<MappingSetting>> {
        let workspace_id = request.workspace_id;
        let Some(import) = &request.import_settings else {
            return Err(StoreError::Invalid(
                "import_settings is required (it is taken whole)".into(),
            ));
        };
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let old: SettingsRow = workspace_settings::table
            .find(workspace_id)
            .select(SettingsRow::as_select())
            .first(&mut conn)
            .await
            .optional()?
            .ok_or(StoreError::NotFound(workspace_id))?;
        let stored = load_mapping_settings(&mut conn, &[workspace_id])
            .await?
            .remove(&workspace_id)
            .unwrap_or_default();
        let imported = categories_imported(&mut conn, workspace_id, &old).await?;
        let plan =
            import_settings::plan(&old, &stored, import, &request.mapping_settings, imported)
                .map_err(StoreError::Invalid)?;
        Ok(import_settings::new_custom_imports(&plan, &stored)
            .into_iter()
            .map(SettingRow::to_proto)
            .collect())
    }

    /// `UpdateImportSettings`: see the module doc and [`crate::import_settings`].
    pub async fn update_import_settings(
        &self,
        request: &UpdateImportSettingsRequest,
    ) -> Result<WorkspaceSnapshot> {
        let workspace_id = request.workspace_id;
        let Some(import) = &request.import_settings else {
            return Err(StoreError::Invalid(
                "import_settings is required (it is taken whole)".into(),
            ));
        };
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let (settings_topic, commands_topic) =
            (self.settings_topic.clone(), self.commands_topic.clone());
        conn.transaction::<_, StoreError, _>(async |conn| {
            let old: SettingsRow = workspace_settings::table
                .find(workspace_id)
                .select(SettingsRow::as_select())
                .for_update()
                .first(conn)
                .await
                .optional()?
                .ok_or(StoreError::NotFound(workspace_id))?;
            mappings::lock_workspace(conn, workspace_id).await?;
            let old_mapping_settings = load_mapping_settings(conn, &[workspace_id])
                .await?
                .remove(&workspace_id)
                .unwrap_or_default();
            let categories_imported = categories_imported(conn, workspace_id, &old).await?;
            let old_rules = mappings::load_rules(conn, workspace_id).await?;
            let plan = import_settings::plan(
                &old,
                &old_mapping_settings,
                import,
                &request.mapping_settings,
                categories_imported,
            )
            .map_err(StoreError::Invalid)?;

            diesel::update(workspace_settings::table.find(workspace_id))
                .set((
                    &plan.settings,
                    workspace_settings::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?;
            replace_mapping_settings(
                conn,
                workspace_id,
                &old_mapping_settings,
                &plan.mapping_settings,
            )
            .await?;
            let removed = mappings::remove_after_settings_change(
                conn,
                workspace_id,
                &plan.retargeted,
                plan.items_turned_off,
            )
            .await?;
            let remapped = match (old_rules, mappings::load_rules(conn, workspace_id).await?) {
                (Some(before), Some(after)) => {
                    mappings::automap_changed_rules(conn, workspace_id, &before, &after).await?
                }
                _ => 0,
            };
            let snap = publish_change(conn, &settings_topic, workspace_id).await?;
            request_imports(
                conn,
                &commands_topic,
                &snap,
                &plan.imports,
                &removed.item_categories,
            )
            .await?;
            tracing::info!(
                workspace_id,
                mapping_settings = plan.mapping_settings.len(),
                retargeted = plan.retargeted.len(),
                unmapped = removed.count,
                remapped,
                imports = plan.imports.len(),
                "import settings updated"
            );
            Ok(snap)
        })
        .await
    }
}

/// Whether the code prefix counts as used: a category import has run, or is already asked
/// for (categories or items were on before this change).
async fn categories_imported(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    old: &SettingsRow,
) -> Result<bool> {
    if old.import_categories || old.import_items {
        return Ok(true);
    }
    Ok(diesel::select(diesel::dsl::exists(
        field_imports::table
            .filter(field_imports::workspace_id.eq(workspace_id))
            .filter(field_imports::source_field.eq("CATEGORY")),
    ))
    .get_result::<bool>(conn)
    .await?)
}

/// Puts one `ImportRequested` per command in the outbox (key: the workspace), each carrying
/// the version of `snap` (its run waits for its projection to reach it); the disable_items
/// command carries the Fyle categories whose item mappings went.
async fn request_imports(
    conn: &mut AsyncPgConnection,
    topic: &str,
    snap: &WorkspaceSnapshot,
    commands: &[ImportCommand],
    item_categories: &[String],
) -> Result<()> {
    let workspace_id = snap.workspace.as_ref().map_or(0, |w| w.id);
    let rows: Vec<_> = commands
        .iter()
        .map(|c| {
            let disable_source_ids = if c.reason == import_settings::REASON_DISABLE_ITEMS {
                item_categories.to_vec()
            } else {
                Vec::new()
            };
            let envelope = envelope::new(
                workspace_id,
                "mapping",
                time::now(),
                Payload::ImportRequested(ImportRequested {
                    source_field: c.source_field.clone(),
                    reason: c.reason.to_owned(),
                    full: c.full,
                    destination_ids: Vec::new(),
                    settings_version: snap.version,
                    disable_source_ids,
                }),
            );
            envelope::outbox_row(topic.to_owned(), &envelope)
        })
        .collect();
    outbox::enqueue(conn, &rows).await?;
    Ok(())
}

type MappingSettingColumns = (String, String, bool, bool, Option<String>);

/// The mapping settings of `workspace_ids`, each list ordered by destination field.
async fn load_mapping_settings(
    conn: &mut AsyncPgConnection,
    workspace_ids: &[i64],
) -> Result<std::collections::HashMap<i64, Vec<SettingRow>>> {
    let rows: Vec<(i64, MappingSettingColumns)> = mapping_settings::table
        .filter(mapping_settings::workspace_id.eq_any(workspace_ids))
        .order((
            mapping_settings::workspace_id,
            mapping_settings::destination_field,
        ))
        .select((
            mapping_settings::workspace_id,
            (
                mapping_settings::source_field,
                mapping_settings::destination_field,
                mapping_settings::import_to_fyle,
                mapping_settings::is_custom,
                mapping_settings::source_placeholder,
            ),
        ))
        .load(conn)
        .await?;
    let mut out: std::collections::HashMap<i64, Vec<SettingRow>> = Default::default();
    for (workspace_id, (source_field, destination_field, import_to_fyle, is_custom, placeholder)) in
        rows
    {
        out.entry(workspace_id).or_default().push(SettingRow {
            source_field,
            destination_field,
            import_to_fyle,
            is_custom,
            source_placeholder: placeholder,
        });
    }
    Ok(out)
}

/// Replaces the workspace's mapping settings with `next`; a row whose destination and content
/// did not change keeps its timestamps. Delete-then-insert, so a swap of two sources' destinations
/// never trips the one-setting-per-source index half way.
async fn replace_mapping_settings(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    old: &[SettingRow],
    next: &[SettingRow],
) -> Result<()> {
    let changed: Vec<&str> = old
        .iter()
        .filter(|o| !next.contains(o))
        .map(|o| o.destination_field.as_str())
        .collect();
    diesel::delete(
        mapping_settings::table
            .filter(mapping_settings::workspace_id.eq(workspace_id))
            .filter(mapping_settings::destination_field.eq_any(&changed)),
    )
    .execute(conn)
    .await?;
    let fresh: Vec<_> = next
        .iter()
        .filter(|n| !old.contains(n))
        .map(|n| {
            (
                mapping_settings::workspace_id.eq(workspace_id),
                mapping_settings::source_field.eq(&n.source_field),
                mapping_settings::destination_field.eq(&n.destination_field),
                mapping_settings::import_to_fyle.eq(n.import_to_fyle),
                mapping_settings::is_custom.eq(n.is_custom),
                mapping_settings::source_placeholder.eq(&n.source_placeholder),
            )
        })
        .collect();
    if !fresh.is_empty() {
        diesel::insert_into(mapping_settings::table)
            .values(&fresh)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// The flag changes a request asks for, applied to the stored settings.
pub(crate) fn apply_flag_changes(settings: &mut SettingsRow, request: &UpdateWebhookFlagsRequest) {
    if let Some(on) = request.fyle_webhook_sync_enabled {
        settings.fyle_webhook_sync_enabled = on;
    }
    if let Some(on) = request.qbo_webhook_sync_enabled {
        settings.qbo_webhook_sync_enabled = on;
    }
    // Fyle types are stored upper snake case (`category` → `CATEGORY`, `CUSTOM:Cost Code` →
    // `CUSTOM:COST_CODE`), as every service compares them; QBO entities compare case-insensitively and are kept as QBO spells them.
    let mut fyle = json_to_bool_map(&settings.fyle_webhook_by_type);
    fyle.extend(
        request
            .set_fyle_by_attribute_type
            .iter()
            .map(|(k, v)| (normalise_type_name(k), *v)),
    );
    for cleared in &request.clear_fyle_by_attribute_type {
        fyle.remove(&normalise_type_name(cleared));
    }
    settings.fyle_webhook_by_type = bool_map_to_json(&fyle);
    let mut qbo = json_to_bool_map(&settings.qbo_webhook_by_entity);
    qbo.extend(
        request
            .set_qbo_by_entity
            .iter()
            .map(|(k, v)| (k.trim().to_owned(), *v)),
    );
    for cleared in &request.clear_qbo_by_entity {
        qbo.remove(cleared.trim());
    }
    settings.qbo_webhook_by_entity = bool_map_to_json(&qbo);
}

/// Records a change of workspace `id` made in the caller's transaction: the version bumped and
/// the new snapshot in the outbox (for changes not made through [`Store`], e.g. consumers).
pub(crate) async fn publish_change(
    conn: &mut AsyncPgConnection,
    topic: &str,
    id: i64,
) -> Result<WorkspaceSnapshot> {
    bump_version(conn, id).await?;
    let snap = load(conn, id).await?;
    publish(conn, topic, &snap).await?;
    Ok(snap)
}

async fn bump_version(conn: &mut AsyncPgConnection, id: i64) -> Result<()> {
    diesel::update(workspaces::table.find(id))
        .set((
            workspaces::version.eq(workspaces::version + 1),
            workspaces::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

async fn load(conn: &mut AsyncPgConnection, id: i64) -> Result<WorkspaceSnapshot> {
    let (workspace, settings): (WorkspaceRow, SettingsRow) = workspaces::table
        .inner_join(workspace_settings::table)
        .filter(workspaces::id.eq(id))
        .select((WorkspaceRow::as_select(), SettingsRow::as_select()))
        .first(conn)
        .await
        .optional()?
        .ok_or(StoreError::NotFound(id))?;
    let mapping_settings = load_mapping_settings(conn, &[id])
        .await?
        .remove(&id)
        .unwrap_or_default();
    Ok(snapshot(&workspace, &settings, &mapping_settings))
}

/// Puts the snapshot in the outbox; it is published once the transaction commits. mapping's
/// own `workspace_projection` row is written in the same transaction: mapping's consumers find
/// their workspaces through it (the platform's idempotent handler looks there), and mapping
/// consumes no snapshots, being their source.
async fn publish(
    conn: &mut AsyncPgConnection,
    topic: &str,
    snap: &WorkspaceSnapshot,
) -> Result<()> {
    if let Some(row) = own_projection::ProjectedWorkspace::from_snapshot(snap) {
        own_projection::apply(conn, &row).await?;
    }
    let workspace_id = snap.workspace.as_ref().map_or(0, |w| w.id);
    let envelope = envelope::new(
        workspace_id,
        "mapping",
        time::now(),
        Payload::WorkspaceSnapshot(snap.clone()),
    );
    outbox::enqueue(conn, &[envelope::outbox_row(topic.to_owned(), &envelope)]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn flag_changes_set_and_clear_overrides() {
        let mut settings = SettingsRow::default();
        apply_flag_changes(
            &mut settings,
            &UpdateWebhookFlagsRequest {
                workspace_id: 1,
                fyle_webhook_sync_enabled: Some(false),
                set_fyle_by_attribute_type: HashMap::from([
                    ("CATEGORY".into(), true),
                    ("PROJECT".into(), false),
                ]),
                ..Default::default()
            },
        );
        assert!(!settings.fyle_webhook_sync_enabled);
        assert!(
            settings.qbo_webhook_sync_enabled,
            "untouched flags keep their value"
        );
        apply_flag_changes(
            &mut settings,
            &UpdateWebhookFlagsRequest {
                workspace_id: 1,
                clear_fyle_by_attribute_type: vec!["PROJECT".into()],
                ..Default::default()
            },
        );
        assert_eq!(
            json_to_bool_map(&settings.fyle_webhook_by_type),
            HashMap::from([("CATEGORY".into(), true)])
        );
        assert!(!settings.fyle_webhook_sync_enabled);
    }
}
