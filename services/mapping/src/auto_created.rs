//! Consuming `sync.fyle-auto-created.v1`: qbo-sync created (or linked) the QBO employee or
//! vendor of a Fyle employee or merchant because the workspace asks for auto-creation; the
//! Fyle value is mapped to it here.
//!
//! Runs inside the platform's idempotent wrapper (one transaction per envelope, redeliveries
//! change nothing). The mapping is written like any auto-mapping — `auto_mapped`, only into an
//! empty (source, destination type) slot, so an operator's mapping is never overwritten — and
//! resolves the source's open errors in the same transaction. When qbo-sync created the
//! entity (`created`, not a link to an existing one), the mapping to that entity is marked
//! `auto_created` (exposed as `Mapping.auto_created`). The event names both sides, so
//! the mapping does not wait for the projections; until their change events arrive it shows
//! `UNKNOWN_ATTRIBUTE`.
//!
//! Failure policy: an event without a source or destination is poison; database errors are
//! classified by the wrapper.

use attrsync_kafka::{
    HandlerError,
    handler::{EffectError, EffectHandler, Event, Tx},
};
use attrsync_proto::v1::FyleAttributeAutoCreated;
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;

use crate::{
    mappings::{self, DestinationRow, SourceRow},
    projection,
};

/// The effect of `sync.fyle-auto-created.v1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AutoCreatedEvents;

/// qbo-sync's display name for rows of `attribute_type` (`vendor`, `employee`).
fn default_display_name(attribute_type: &str) -> String {
    match attribute_type {
        "VENDOR" => "vendor".to_owned(),
        "EMPLOYEE" => "employee".to_owned(),
        other => other.to_owned(),
    }
}

impl EffectHandler for AutoCreatedEvents {
    type Payload = FyleAttributeAutoCreated;

    async fn apply(
        &self,
        tx: &mut Tx<'_>,
        event: &Event<'_, FyleAttributeAutoCreated>,
    ) -> Result<(), EffectError> {
        let e = &event.payload;
        if e.source_attribute_type.is_empty()
            || e.source_id.is_empty()
            || e.destination_attribute_type.is_empty()
            || e.destination_id.is_empty()
        {
            return Err(HandlerError::Poison(
                "an auto-created event needs both a source and a destination".into(),
            )
            .into());
        }
        let workspace_id = event.workspace.workspace_id;
        let conn = &mut *tx.conn;
        mappings::lock_workspace(conn, workspace_id).await?;
        let known = projection::find_destinations(
            conn,
            workspace_id,
            &e.destination_attribute_type,
            &e.destination_id,
        )
        .await?;
        let display_name = <[_]>::first(&known).map_or_else(
            || default_display_name(&e.destination_attribute_type),
            |d| d.display_name.clone(),
        );
        let source = SourceRow {
            attribute_type: e.source_attribute_type.clone(),
            source_id: e.source_id.clone(),
            value: e.source_value.clone(),
            active: true,
            detail: None,
        };
        let destination = DestinationRow {
            attribute_type: e.destination_attribute_type.clone(),
            display_name,
            destination_id: e.destination_id.clone(),
            value: e.destination_value.clone(),
            code: None,
            active: true,
            detail: None,
        };
        let inserted = mappings::insert_auto(conn, workspace_id, &source, &destination).await?;
        if e.created {
            // The mapping to this very entity — just written, or an operator's to the same
            // one — carries the mark; a mapping to another entity is left as it is.
            diesel::sql_query(
                "UPDATE mappings SET auto_created = true, updated_at = now() \
                 WHERE workspace_id = $1 AND source_type = $2 AND source_id = $3 \
                   AND destination_type = $4 AND destination_id = $5 AND NOT auto_created",
            )
            .bind::<BigInt, _>(workspace_id)
            .bind::<Text, _>(&e.source_attribute_type)
            .bind::<Text, _>(&e.source_id)
            .bind::<Text, _>(&e.destination_attribute_type)
            .bind::<Text, _>(&e.destination_id)
            .execute(conn)
            .await?;
        }
        if let Some(id) = inserted {
            metrics::counter!("mapping_auto_mapped_total", "source_type" => "AUTO_CREATED")
                .increment(1);
            tracing::info!(
                workspace_id,
                mapping_id = id,
                source_type = %e.source_attribute_type,
                destination_type = %e.destination_attribute_type,
                created = e.created,
                "mapped to an auto-created QBO entity"
            );
        }
        Ok(())
    }

    async fn apply_all(
        &self,
        tx: &mut Tx<'_>,
        events: &[Event<'_, FyleAttributeAutoCreated>],
    ) -> Result<(), EffectError> {
        mappings::apply_each_locked(self, tx, events).await
    }
}
