//! A workspace moved to another QBO company.
//!
//! QBO ids are small numbers counted per company: Customer `58` of one realm and Customer `58`
//! of another are different entities. Rows, watermarks and merges are therefore only
//! meaningful for the realm they came from, which `qbo_workspace_sync.realm_id` records. Every
//! path that writes a workspace's rows first calls [`ensure`] with the workspace's current realm
//! (mapping's projection); when it differs from the recorded one, in the caller's transaction:
//! every active row is deactivated (with its `deactivated` events, so import-to-fyle and mapping
//! retire what the old company's values stood for), the rows, sync state, counts and merges of
//! the old company are deleted, and the new realm is recorded — the next pull starts from
//! nothing, with no watermark, so it is a full pass of the new company.
//!
//! Failure policy: all or nothing inside the caller's transaction; a failure leaves the old
//! realm recorded and the change is retried by the next write.

use attrsync_config::KafkaConfig;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::{
    apply,
    rules::SyncEntity,
    schema::{
        destination_attributes as da, qbo_attribute_counts as counts, qbo_merges as merges,
        qbo_sync_state as state, qbo_workspace_sync as synced,
    },
    store::{self, Deactivation},
};

/// Records `realm` for `workspace_id`, retiring another realm's rows first. Returns whether a
/// change of company was handled.
pub async fn ensure(
    conn: &mut AsyncPgConnection,
    kafka: &KafkaConfig,
    workspace_id: i64,
    realm: &str,
) -> QueryResult<bool> {
    let recorded: Option<Option<String>> = synced::table
        .find(workspace_id)
        .select(synced::realm_id)
        .for_update()
        .first(conn)
        .await
        .optional()?;
    match recorded.flatten() {
        Some(r) if r == realm => Ok(false),
        Some(old) => {
            let mut changes = Vec::new();
            for entity in SyncEntity::ALL {
                let ids: Vec<String> = da::table
                    .filter(da::workspace_id.eq(workspace_id))
                    .filter(da::qbo_entity.eq(entity.as_str()))
                    .filter(da::active.eq(true))
                    .select(da::destination_id)
                    .distinct()
                    .load(conn)
                    .await?;
                if ids.is_empty() {
                    continue;
                }
                let written =
                    store::deactivate(conn, workspace_id, entity.as_str(), Deactivation::Ids(&ids))
                        .await?;
                changes.extend(written.iter().filter_map(apply::change_event));
            }
            apply::publish(conn, kafka, workspace_id, "realm_change", changes).await?;
            diesel::delete(da::table.filter(da::workspace_id.eq(workspace_id)))
                .execute(conn)
                .await?;
            diesel::delete(state::table.filter(state::workspace_id.eq(workspace_id)))
                .execute(conn)
                .await?;
            diesel::delete(counts::table.filter(counts::workspace_id.eq(workspace_id)))
                .execute(conn)
                .await?;
            diesel::delete(merges::table.filter(merges::workspace_id.eq(workspace_id)))
                .execute(conn)
                .await?;
            diesel::update(synced::table.find(workspace_id))
                .set((
                    synced::realm_id.eq(realm),
                    synced::destination_synced_at.eq(None::<chrono::DateTime<chrono::Utc>>),
                ))
                .execute(conn)
                .await?;
            tracing::warn!(workspace_id, old_realm = %old, new_realm = realm, "workspace moved to another QBO company: the old company's rows retired");
            metrics::counter!("qbo_sync_realm_changes_total").increment(1);
            Ok(true)
        }
        None => {
            diesel::insert_into(synced::table)
                .values((
                    synced::workspace_id.eq(workspace_id),
                    synced::realm_id.eq(realm),
                ))
                .on_conflict(synced::workspace_id)
                .do_update()
                .set(synced::realm_id.eq(realm))
                .execute(conn)
                .await?;
            Ok(false)
        }
    }
}

/// [`ensure`] in a transaction of its own (the pull paths, before their 24-hour rule reads
/// `destination_synced_at`).
pub async fn ensure_in(
    pool: &attrsync_db::Pool,
    kafka: &KafkaConfig,
    workspace_id: i64,
    realm: &str,
) -> Result<bool, attrsync_db::DbError> {
    use diesel_async::AsyncConnection as _;
    let mut conn = pool.get().await?;
    Ok(conn
        .transaction::<bool, diesel::result::Error, _>(async |conn| {
            ensure(conn, kafka, workspace_id, realm).await
        })
        .await?)
}
