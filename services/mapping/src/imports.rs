//! Consuming `imports.events.v1`: which Fyle fields import-to-fyle has run an import of, kept
//! in `field_imports`. The import-settings rules read it: once a category import has run, the
//! code-prefix choice is fixed (#39).
//!
//! Runs inside the platform's idempotent wrapper (one transaction per envelope, redeliveries
//! change nothing). A skipped run (the 30-minute rule, settings that import nothing) posted
//! nothing and is not recorded; any other outcome is — a failed run may have posted batches
//! before failing. The row keeps the first run's time and the newest outcome by envelope time,
//! so an older event arriving late changes nothing.
//!
//! Failure policy: an event without a source field is poison; database errors are classified
//! by the wrapper.

use attrsync_kafka::{
    HandlerError,
    handler::{EffectError, EffectHandler, Event, Tx},
};
use attrsync_proto::v1::{ImportCompleted, ImportStatus};
use chrono::Utc;
use diesel::sql_types::{BigInt, Text, Timestamptz};
use diesel_async::RunQueryDsl;

/// The effect of `imports.events.v1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportEvents;

impl EffectHandler for ImportEvents {
    type Payload = ImportCompleted;

    async fn apply(
        &self,
        tx: &mut Tx<'_>,
        event: &Event<'_, ImportCompleted>,
    ) -> Result<(), EffectError> {
        let completed = &event.payload;
        if completed.source_field.is_empty() {
            return Err(
                HandlerError::Poison("ImportCompleted without a source field".into()).into(),
            );
        }
        let status = completed.status();
        if matches!(status, ImportStatus::Skipped | ImportStatus::Unspecified) {
            return Ok(());
        }
        let at = event.occurred_at.unwrap_or_else(Utc::now);
        diesel::sql_query(
            "INSERT INTO field_imports AS f \
                 (workspace_id, source_field, first_run_at, last_status, last_event_at) \
             VALUES ($1, $2, $3, $4, $3) \
             ON CONFLICT (workspace_id, source_field) DO UPDATE SET \
                 first_run_at = least(f.first_run_at, excluded.first_run_at), \
                 last_status = CASE WHEN excluded.last_event_at >= f.last_event_at \
                     THEN excluded.last_status ELSE f.last_status END, \
                 last_event_at = greatest(f.last_event_at, excluded.last_event_at)",
        )
        .bind::<BigInt, _>(event.workspace.workspace_id)
        .bind::<Text, _>(&completed.source_field)
        .bind::<Timestamptz, _>(at)
        .bind::<Text, _>(status.as_str_name())
        .execute(&mut *tx.conn)
        .await?;
        Ok(())
    }
}
