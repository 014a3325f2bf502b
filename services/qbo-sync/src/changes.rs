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
//! Repeated changes of the same kind for the same entity (a burst, or redeliveries during an
//! outage) keep one pending row (`qbo_pending_changes_one_per_change`): the fetch reads the
//! entity's state now, so one read serves them all and the table stays bounded by distinct ids.
//!
//! Failure policy: a change for another realm than the workspace's (the workspace was moved to
//! another company after ingest fanned it out) is counted and ignored; entities qbo-sync does
//! not sync (Bill, Invoice, …) are recorded anyway and counted as ignored by the fetcher's
//! plan, which keeps one rule for what is synced ([`crate::rules`]). Malformed payloads (no
//! realm, entity or id, or ids that are not QBO's numeric ids) are poison: one, if recorded, could
//! only fail every fetch round of its realm.

use attrsync_kafka::{
    HandlerError,
    handler::{EffectError, EffectHandler, Event, Tx},
};
use attrsync_proto::{time, v1::QboEntityChange};
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;

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
        if !valid_change(change) {
            return Err(HandlerError::Poison(
                "a QBO entity change needs a realm, an entity name and numeric ids".into(),
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
        // A repeat keeps the newest `lastUpdated`: a Delete is applied unless the stored copy is
        // newer than the newest Delete seen.
        diesel::sql_query(
            "INSERT INTO qbo_pending_changes \
                 (realm_id, workspace_id, qbo_entity, entity_id, operation, deleted_id, last_updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (realm_id, workspace_id, qbo_entity, entity_id, operation, \
                          coalesce(deleted_id, '')) \
             DO UPDATE SET last_updated = GREATEST(qbo_pending_changes.last_updated, \
                                                   excluded.last_updated)",
        )
        .bind::<Text, _>(&change.realm_id)
        .bind::<BigInt, _>(event.workspace.workspace_id)
        .bind::<Text, _>(&change.entity)
        .bind::<Text, _>(&change.entity_id)
        .bind::<Text, _>(&change.operation)
        .bind::<Nullable<Text>, _>((!change.deleted_id.is_empty()).then_some(&change.deleted_id))
        .bind::<Nullable<Timestamptz>, _>(change.last_updated.as_ref().and_then(time::from_proto))
        .execute(tx.conn)
        .await?;
        metrics::counter!("qbo_changes_recorded_total").increment(1);
        Ok(())
    }
}

/// QBO ids are numeric strings (reference §3.3; `Class` ids have 19 digits); entity names are
/// QBO identifiers. Anything else could only wedge a fetch round, so it is refused here (pure).
pub fn valid_change(change: &QboEntityChange) -> bool {
    let numeric = |s: &str| !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit());
    numeric(&change.realm_id)
        && numeric(&change.entity_id)
        && (change.deleted_id.is_empty() || numeric(&change.deleted_id))
        && !change.entity.is_empty()
        && change.entity.len() <= 64
        && change.entity.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(realm: &str, entity: &str, id: &str, deleted: &str) -> QboEntityChange {
        QboEntityChange {
            realm_id: realm.into(),
            entity: entity.into(),
            entity_id: id.into(),
            deleted_id: deleted.into(),
            ..Default::default()
        }
    }

    #[test]
    fn only_numeric_ids_and_plain_entity_names_are_recorded() {
        assert!(valid_change(&change(
            "9130357766900456",
            "Customer",
            "58",
            ""
        )));
        assert!(valid_change(&change(
            "1",
            "Class",
            "5000000000000085682",
            "31"
        )));
        assert!(!valid_change(&change("1", "Customer", "58') OR (1=1", "")));
        assert!(!valid_change(&change("1", "Customer", &"9".repeat(33), "")));
        assert!(!valid_change(&change("1", "Customer", "", "")));
        assert!(!valid_change(&change("1", "Cust omer", "5", "")));
        assert!(!valid_change(&change("1", "Vendor", "5", "x")));
        assert!(!valid_change(&change("realm", "Vendor", "5", "")));
    }
}
