//! Consuming `sync.expense-attributes.v1`: Fyle employees and merchants the settings ask to
//! create in QBO are recorded in `qbo_pending_creates`, never sent to QBO here (see the
//! [module docs](super)).

use attrsync_kafka::handler::{EffectError, EffectHandler, Event, Tx};
use attrsync_proto::v1::ExpenseAttributesChanged;
use diesel::{
    prelude::*,
    sql_types::{BigInt, Nullable, Text},
};
use diesel_async::RunQueryDsl;

use super::{destination_type, request_id, wanted};
use crate::{schema::destination_attributes as da, settings};

/// The effect of `sync.expense-attributes.v1` in qbo-sync.
#[derive(Debug, Clone, Copy, Default)]
pub struct FyleValues;

/// One waiting request per name: a second one while the first waits adds nothing.
const RECORD: &str = "\
INSERT INTO qbo_pending_creates
    (workspace_id, realm_id, qbo_entity, display_name, email, source_attribute_type, source_id,
     source_value, request_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (workspace_id, qbo_entity, lower(display_name)) WHERE status = 'PENDING' DO NOTHING";

impl EffectHandler for FyleValues {
    type Payload = ExpenseAttributesChanged;

    async fn apply(
        &self,
        tx: &mut Tx<'_>,
        event: &Event<'_, ExpenseAttributesChanged>,
    ) -> Result<(), EffectError> {
        let workspace = settings::of(event.workspace);
        if workspace.auto_create == settings::AutoCreate::default() {
            return Ok(());
        }
        for change in &event.payload.changes {
            let request = match wanted(change, &workspace.auto_create) {
                Ok(request) => request,
                Err(skip) => {
                    metrics::counter!("qbo_sync_auto_create_skipped_total", "reason" => skip.as_str())
                        .increment(1);
                    continue;
                }
            };
            let Some(realm) = workspace.realm_id.as_deref() else {
                metrics::counter!("qbo_sync_auto_create_skipped_total", "reason" => "no_realm")
                    .increment(1);
                continue;
            };
            // Already a destination attribute of that name: nothing to create, no request spent.
            // (`lower` follows the database's collation, which may leave non-ASCII letters
            // alone; a case variant it misses is found by QBO's lookup and linked.)
            let exists: i64 = da::table
                .filter(da::workspace_id.eq(workspace.workspace_id))
                .filter(da::attribute_type.eq(destination_type(request.entity)))
                .filter(da::active)
                .filter(
                    diesel::dsl::sql::<diesel::sql_types::Bool>("lower(value) = lower(")
                        .bind::<Text, _>(&request.display_name)
                        .sql(")"),
                )
                .count()
                .get_result(tx.conn)
                .await?;
            if exists > 0 {
                metrics::counter!("qbo_sync_auto_create_skipped_total", "reason" => "exists")
                    .increment(1);
                continue;
            }
            let recorded = diesel::sql_query(RECORD)
                .bind::<BigInt, _>(workspace.workspace_id)
                .bind::<Text, _>(realm)
                .bind::<Text, _>(request.entity.as_str())
                .bind::<Text, _>(&request.display_name)
                .bind::<Nullable<Text>, _>(request.email.as_deref())
                .bind::<Text, _>(&change.attribute_type)
                .bind::<Text, _>(&change.source_id)
                .bind::<Text, _>(&change.value)
                .bind::<Text, _>(request_id(
                    workspace.workspace_id,
                    request.entity,
                    &request.display_name,
                ))
                .execute(tx.conn)
                .await?;
            metrics::counter!(
                "qbo_sync_auto_create_recorded_total",
                "waiting" => if recorded == 0 { "already" } else { "new" }
            )
            .increment(1);
        }
        Ok(())
    }
}
