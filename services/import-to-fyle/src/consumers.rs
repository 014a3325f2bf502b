//! The consumers: they only **record** — a QBO change into `import_destination_attributes`
//! and, for the source fields the workspace imports from that type, a row in
//! `import_requests`; an `ImportRequested` command into `import_requests`. The runner task
//! ([`crate::requests`]) serves the requests outside any consumer transaction, so no Fyle
//! call ever runs inside one, a Fyle outage never stalls a partition, and a burst of changes
//! becomes one run per workspace × source field.
//!
//! Both run inside the platform's idempotent handler ([`attrsync_kafka::handler`]): one
//! transaction per envelope, applied at most once (`processed_events`); and the upsert is
//! newest-wins, so even a re-published change cannot move a value back.
//!
//! A command carries the snapshot version mapping decided it on (its run waits for the
//! projection to reach it) and, for disable_items, the Fyle ids to disable, kept in
//! `import_disables` until a run has posted them.
//!
//! Failure policy: an `ImportRequested` whose source field is neither a built-in field nor a
//! custom field name in the form mapping stores (`SourceField::parse`) is counted and ignored,
//! not poison — mapping may know more fields than this version; an empty source field is
//! poison.

use attrsync_kafka::{
    HandlerError,
    handler::{EffectError, EffectHandler, Event, Tx},
};
use attrsync_proto::v1::{DestinationAttributesChanged, ImportRequested};
use chrono::Utc;

use crate::{
    modules::{SourceField, fields_for},
    settings, store,
};

/// Why a run was asked for by a QBO change (runs for it ignore the 30-minute rule).
pub const REASON_DESTINATION_CHANGED: &str = "destination_changed";

/// Why a run was asked for by the import schedule (#61; the 30-minute rule applies).
pub const REASON_SCHEDULE: &str = "schedule";

/// The effect of `sync.destination-attributes.v1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DestinationChanges;

impl EffectHandler for DestinationChanges {
    type Payload = DestinationAttributesChanged;

    async fn apply(
        &self,
        tx: &mut Tx<'_>,
        event: &Event<'_, DestinationAttributesChanged>,
    ) -> Result<(), EffectError> {
        let workspace_id = event.workspace.workspace_id;
        let version = event.occurred_at.unwrap_or_else(Utc::now);
        let changed =
            store::record_changes(tx.conn, workspace_id, version, &event.payload.changes).await?;
        let plan = settings::plan(event.workspace);
        let mut fields: Vec<SourceField> =
            changed.iter().flat_map(|t| fields_for(t, &plan)).collect();
        fields.sort();
        fields.dedup();
        for field in fields {
            store::request(
                tx.conn,
                workspace_id,
                &field,
                store::Ask {
                    full: false,
                    force: false,
                    reason: REASON_DESTINATION_CHANGED,
                    settings_version: 0,
                },
            )
            .await?;
        }
        metrics::counter!("import_to_fyle_destination_changes_total")
            .increment(event.payload.changes.len() as u64);
        Ok(())
    }
}

/// The effect of `imports.commands.v1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportCommands;

impl EffectHandler for ImportCommands {
    type Payload = ImportRequested;

    async fn apply(
        &self,
        tx: &mut Tx<'_>,
        event: &Event<'_, ImportRequested>,
    ) -> Result<(), EffectError> {
        let command = &event.payload;
        if command.source_field.is_empty() {
            return Err(
                HandlerError::Poison("ImportRequested without a source field".into()).into(),
            );
        }
        let Some(field) = SourceField::parse(&command.source_field) else {
            metrics::counter!("import_to_fyle_commands_ignored_total", "reason" => "unknown_field")
                .increment(1);
            tracing::warn!(
                source_field = %command.source_field,
                "ImportRequested for a source field not imported by this version: ignored"
            );
            return Ok(());
        };
        let reason = if command.reason.is_empty() {
            "command"
        } else {
            command.reason.as_str()
        };
        store::record_disables(
            tx.conn,
            event.workspace.workspace_id,
            &field,
            &command.disable_source_ids,
        )
        .await?;
        store::request(
            tx.conn,
            event.workspace.workspace_id,
            &field,
            store::Ask {
                full: command.full,
                force: false,
                reason,
                settings_version: command.settings_version,
            },
        )
        .await?;
        Ok(())
    }
}
