//! Consuming `qbo.entity-changes.v1`: QBO webhook changes are recorded, not fetched, here.
//!
//! Runs inside the platform's idempotent handler ([`attrsync_kafka::handler`]): each envelope is
//! applied at most once, in one transaction, for a known live workspace. The effect only
//! inserts the change into `qbo_pending_changes`; the fetcher ([`crate::fetch`]) then serves a
//! realm's pending changes together — one request per entity type for every workspace sharing
//! the realm — and deletes them in the transaction that applies what it fetched. So no HTTP
//! call ever runs inside a consumer transaction, a QBO outage never stalls a partition, and
//! nothing is lost: a change is in Kafka until it is in `qbo_pending_changes`, and there until
//! it is applied.
//!
//! Failure policy: a change for another realm than the workspace's (the workspace was moved to
//! another company after ingest fanned it out) is counted and ignored; entities qbo-sync does
//! not sync (Bill, Invoice, …) are recorded anyway and counted as ignored by the fetcher's
//! plan, which keeps one rule for what is synced ([`crate::rules`]). Malformed payloads (no
//! realm, entity or id) are poison.

use attrsync_kafka::{
    HandlerError,
    handler::{EffectError, EffectHandler, Event, Tx},
};
use attrsync_proto::{time, v1::QboEntityChange};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::schema::qbo_pending_changes as pending;

/// The effect of `qbo.entity-changes.v1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct EntityChanges;

impl EffectHandler for EntityChanges {
    type Payload = QboEntityChange;

    async fn apply(
        &self,
        tx: &mut Tx<'_>,
        event: &Event<'_, QboEntityChange>,
    ) -> Result<(), EffectError> {
        let change = &event.payload;
        if change.realm_id.is_empty() || change.entity.is_empty() || change.entity_id.is_empty() {
            return Err(HandlerError::Poison(
                "a QBO entity change needs a realm, an entity and an id".into(),
            )
            .into());
        }
        if event.workspace.qbo_realm_id.as_deref() != Some(change.realm_id.as_str()) {
            metrics::counter!("qbo_changes_ignored_total", "reason" => "realm_mismatch")
                .increment(1);
            tracing::warn!(
                workspace_id = event.workspace.workspace_id,
                "QBO change for a realm the workspace is not connected to: ignored"
            );
            return Ok(());
        }
        diesel::insert_into(pending::table)
            .values((
                pending::realm_id.eq(&change.realm_id),
                pending::workspace_id.eq(event.workspace.workspace_id),
                pending::qbo_entity.eq(&change.entity),
                pending::entity_id.eq(&change.entity_id),
                pending::operation.eq(&change.operation),
                pending::deleted_id
                    .eq((!change.deleted_id.is_empty()).then_some(&change.deleted_id)),
                pending::last_updated.eq(change.last_updated.as_ref().and_then(time::from_proto)),
            ))
            .execute(tx.conn)
            .await?;
        metrics::counter!("qbo_changes_recorded_total").increment(1);
        Ok(())
    }
}
