//! mapping's projections of both sides, and the real-time auto-mapping they drive.
//!
//! Two consumers, each an effect inside the platform's idempotent wrapper
//! ([`attrsync_kafka::handler`]): a redelivered envelope is found in `processed_events` and
//! changes nothing; each envelope is applied in one transaction.
//! - `sync.expense-attributes.v1` (fyle-sync) → `source_attributes`;
//! - `sync.destination-attributes.v1` (qbo-sync) → `destination_attributes`.
//!
//! Rows are keyed by id — (type, source id) and (type, display name, destination id) — never
//! by value: a rename updates the row in place. Each change carries the row's whole visible
//! state (value, active, detail, code), so applying the newest change is applying the truth.
//!
//! **Version rule** ([`plan`]): each row keeps `event_at`, the `occurred_at` of the envelope
//! that last wrote it (producers stamp it when their transaction publishes, and their outbox
//! relays a workspace's events in commit order). A change whose envelope is older than the
//! stored one is stale and ignored — a replay of old events (a reset consumer group, a
//! re-published envelope under a new id) cannot roll a row back; an equal or newer one with
//! identical content changes nothing; otherwise the row is written. Within one envelope the
//! changes apply in order. An envelope without `occurred_at` counts as now.
//!
//! **Auto-mapping** runs in the same transaction, only for rows this event actually wrote and
//! that are active: a Fyle value is matched against the QBO values of its target type; a QBO
//! value against the unmapped Fyle values it could answer ([`crate::mappings`]). So a mapping
//! appears within one consumer hop of whichever side arrives second — no schedule. The
//! workspace's rules are read from mapping's own settings tables at each event, so a settings
//! change applies to the next event. A deactivated destination's mappings are kept and shown
//! flagged (`ListMappings`), counted in `mapping_flagged_total{reason}` and logged.
//!
//! Not yet: the projections start empty and fill from the events consumed; values that no
//! event has carried since mapping started consuming (older than the topics' retention) are
//! unknown until a backfill from fyle-sync's / qbo-sync's list APIs exists.
//!
//! Failure policy: a change without a type or id is poison (the envelope is dead-lettered,
//! nothing of it applied); database errors are classified by the wrapper (outages wait, an
//! integrity error is retried then dead-lettered).

use attrsync_kafka::{
    HandlerError,
    handler::{EffectError, EffectHandler, Event, Tx},
};
use attrsync_proto::v1::{
    DestinationAttributeChange, DestinationAttributesChanged, ExpenseAttributeChange,
    ExpenseAttributesChanged,
};
use chrono::{DateTime, Utc};
use diesel::{
    prelude::*,
    sql_types::{BigInt, Text},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use crate::{
    automap::Rules,
    mappings::{self, DestinationRow, SourceRow},
    schema::{destination_attributes as da, source_attributes as sa},
};

/// What a change does to its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Insert,
    Update,
    /// Same content as stored: nothing to write.
    Unchanged,
    /// Older than what wrote the stored row.
    Stale,
}

/// The version rule of the module doc.
pub fn plan<C: PartialEq>(
    stored: Option<(&C, DateTime<Utc>)>,
    incoming: &C,
    event_at: DateTime<Utc>,
) -> Plan {
    match stored {
        None => Plan::Insert,
        Some((_, stored_at)) if event_at < stored_at => Plan::Stale,
        Some((content, _)) if content == incoming => Plan::Unchanged,
        Some(_) => Plan::Update,
    }
}

fn detail(json: &str) -> Result<Option<Value>, EffectError> {
    if json.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str::<Value>(json)
        .map(|v| (!v.is_null()).then_some(v))
        .map_err(|e| poison(format!("detail_json is not JSON: {e}")))
}

fn poison(reason: String) -> EffectError {
    EffectError::Handler(HandlerError::Poison(reason))
}

fn count(side: &'static str, plan: Plan) {
    let outcome = match plan {
        Plan::Insert => "inserted",
        Plan::Update => "updated",
        Plan::Unchanged => "unchanged",
        Plan::Stale => "stale",
    };
    metrics::counter!("mapping_projection_changes_total", "side" => side, "outcome" => outcome)
        .increment(1);
}

/// The effect of `sync.expense-attributes.v1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExpenseAttributeEvents;

/// What a source row holds besides its key.
#[derive(Debug, Clone, PartialEq)]
struct SourceContent {
    value: String,
    display_name: String,
    active: bool,
    detail: Option<Value>,
}

impl EffectHandler for ExpenseAttributeEvents {
    type Payload = ExpenseAttributesChanged;

    async fn apply(
        &self,
        tx: &mut Tx<'_>,
        event: &Event<'_, ExpenseAttributesChanged>,
    ) -> Result<(), EffectError> {
        let workspace_id = event.workspace.workspace_id;
        let event_at = event.occurred_at.unwrap_or_else(Utc::now);
        let conn = &mut *tx.conn;
        mappings::lock_workspace(conn, workspace_id).await?;
        let mut rules: Option<Option<Rules>> = None;
        for change in &event.payload.changes {
            let Some(row) = apply_source(conn, workspace_id, change, event_at).await? else {
                continue;
            };
            if !row.active {
                continue;
            }
            if rules.is_none() {
                rules = Some(mappings::load_rules(conn, workspace_id).await?);
            }
            if let Some(Some(rules)) = &rules {
                mappings::automap_source(conn, workspace_id, rules, &row).await?;
            }
        }
        Ok(())
    }
}

/// Applies one change; returns the row when it was written.
async fn apply_source(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    change: &ExpenseAttributeChange,
    event_at: DateTime<Utc>,
) -> Result<Option<SourceRow>, EffectError> {
    if change.attribute_type.is_empty() || change.source_id.is_empty() {
        return Err(poison(
            "a change needs an attribute type and a source id".into(),
        ));
    }
    let incoming = SourceContent {
        value: change.value.clone(),
        display_name: change.display_name.clone(),
        active: change.active,
        detail: detail(&change.detail_json)?,
    };
    type Stored = (String, String, bool, Option<Value>, DateTime<Utc>);
    let stored: Option<Stored> = sa::table
        .find((workspace_id, &change.attribute_type, &change.source_id))
        .select((
            sa::value,
            sa::display_name,
            sa::active,
            sa::detail,
            sa::event_at,
        ))
        .for_update()
        .first(conn)
        .await
        .optional()?;
    let stored = stored.map(|(value, display_name, active, detail, at)| {
        (
            SourceContent {
                value,
                display_name,
                active,
                detail,
            },
            at,
        )
    });
    let decision = plan(stored.as_ref().map(|(c, at)| (c, *at)), &incoming, event_at);
    count("source", decision);
    match decision {
        Plan::Stale | Plan::Unchanged => return Ok(None),
        Plan::Insert | Plan::Update => {}
    }
    diesel::insert_into(sa::table)
        .values((
            sa::workspace_id.eq(workspace_id),
            sa::attribute_type.eq(&change.attribute_type),
            sa::source_id.eq(&change.source_id),
            sa::value.eq(&incoming.value),
            sa::display_name.eq(&incoming.display_name),
            sa::active.eq(incoming.active),
            sa::detail.eq(incoming.detail.as_ref()),
            sa::event_at.eq(event_at),
        ))
        .on_conflict((sa::workspace_id, sa::attribute_type, sa::source_id))
        .do_update()
        .set((
            sa::value.eq(&incoming.value),
            sa::display_name.eq(&incoming.display_name),
            sa::active.eq(incoming.active),
            sa::detail.eq(incoming.detail.as_ref()),
            sa::event_at.eq(event_at),
            sa::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(Some(SourceRow {
        attribute_type: change.attribute_type.clone(),
        source_id: change.source_id.clone(),
        value: incoming.value,
        active: incoming.active,
        detail: incoming.detail,
    }))
}

/// The effect of `sync.destination-attributes.v1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DestinationAttributeEvents;

#[derive(Debug, Clone, PartialEq)]
struct DestinationContent {
    value: String,
    code: Option<String>,
    active: bool,
    detail: Option<Value>,
}

impl EffectHandler for DestinationAttributeEvents {
    type Payload = DestinationAttributesChanged;

    async fn apply(
        &self,
        tx: &mut Tx<'_>,
        event: &Event<'_, DestinationAttributesChanged>,
    ) -> Result<(), EffectError> {
        let workspace_id = event.workspace.workspace_id;
        let event_at = event.occurred_at.unwrap_or_else(Utc::now);
        let conn = &mut *tx.conn;
        mappings::lock_workspace(conn, workspace_id).await?;
        let mut rules: Option<Option<Rules>> = None;
        for change in &event.payload.changes {
            let Some((row, was_active)) =
                apply_destination(conn, workspace_id, change, event_at).await?
            else {
                continue;
            };
            if !row.active {
                if was_active != Some(false) {
                    flag_deactivated(conn, workspace_id, &row).await?;
                }
                continue;
            }
            if rules.is_none() {
                rules = Some(mappings::load_rules(conn, workspace_id).await?);
            }
            if let Some(Some(rules)) = &rules {
                mappings::automap_destination(conn, workspace_id, rules, &row).await?;
            }
        }
        Ok(())
    }
}

async fn flag_deactivated(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    row: &DestinationRow,
) -> Result<(), EffectError> {
    let flagged = mappings::mappings_to(conn, workspace_id, row).await?;
    if flagged > 0 {
        metrics::counter!("mapping_flagged_total", "reason" => "destination_inactive")
            .increment(flagged as u64);
        tracing::warn!(
            workspace_id,
            destination_type = %row.attribute_type,
            destination_id = %row.destination_id,
            mappings = flagged,
            "destination deactivated: its mappings are flagged"
        );
    }
    Ok(())
}

/// Applies one change; returns the row when it was written, with its previous active flag.
async fn apply_destination(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    change: &DestinationAttributeChange,
    event_at: DateTime<Utc>,
) -> Result<Option<(DestinationRow, Option<bool>)>, EffectError> {
    if change.attribute_type.is_empty() || change.destination_id.is_empty() {
        return Err(poison(
            "a change needs an attribute type and a destination id".into(),
        ));
    }
    let display_name = if change.display_name.is_empty() {
        change.attribute_type.clone()
    } else {
        change.display_name.clone()
    };
    let incoming = DestinationContent {
        value: change.value.clone(),
        code: change.code.clone().filter(|c| !c.is_empty()),
        active: change.active,
        detail: detail(&change.detail_json)?,
    };
    type Stored = (String, Option<String>, bool, Option<Value>, DateTime<Utc>);
    let stored: Option<Stored> = da::table
        .find((
            workspace_id,
            &change.attribute_type,
            &display_name,
            &change.destination_id,
        ))
        .select((da::value, da::code, da::active, da::detail, da::event_at))
        .for_update()
        .first(conn)
        .await
        .optional()?;
    let was_active = stored.as_ref().map(|s| s.2);
    let stored = stored.map(|(value, code, active, detail, at)| {
        (
            DestinationContent {
                value,
                code,
                active,
                detail,
            },
            at,
        )
    });
    let decision = plan(stored.as_ref().map(|(c, at)| (c, *at)), &incoming, event_at);
    count("destination", decision);
    match decision {
        Plan::Stale | Plan::Unchanged => return Ok(None),
        Plan::Insert | Plan::Update => {}
    }
    diesel::insert_into(da::table)
        .values((
            da::workspace_id.eq(workspace_id),
            da::attribute_type.eq(&change.attribute_type),
            da::display_name.eq(&display_name),
            da::destination_id.eq(&change.destination_id),
            da::value.eq(&incoming.value),
            da::code.eq(incoming.code.as_deref()),
            da::active.eq(incoming.active),
            da::detail.eq(incoming.detail.as_ref()),
            da::event_at.eq(event_at),
        ))
        .on_conflict((
            da::workspace_id,
            da::attribute_type,
            da::display_name,
            da::destination_id,
        ))
        .do_update()
        .set((
            da::value.eq(&incoming.value),
            da::code.eq(incoming.code.as_deref()),
            da::active.eq(incoming.active),
            da::detail.eq(incoming.detail.as_ref()),
            da::event_at.eq(event_at),
            da::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(Some((
        DestinationRow {
            attribute_type: change.attribute_type.clone(),
            display_name,
            destination_id: change.destination_id.clone(),
            value: incoming.value,
            code: incoming.code,
            active: incoming.active,
            detail: incoming.detail,
        },
        was_active,
    )))
}

/// A source row read back by key (the API checks that a mapping's source exists).
pub(crate) async fn find_source(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    attribute_type: &str,
    source_id: &str,
) -> QueryResult<Option<SourceRow>> {
    diesel::sql_query(
        "SELECT attribute_type, source_id, value, active, detail FROM source_attributes \
         WHERE workspace_id = $1 AND attribute_type = $2 AND source_id = $3",
    )
    .bind::<BigInt, _>(workspace_id)
    .bind::<Text, _>(attribute_type)
    .bind::<Text, _>(source_id)
    .get_result(conn)
    .await
    .optional()
}

/// The destination rows of a type and id (an Account and an Item may share an id).
pub(crate) async fn find_destinations(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    attribute_type: &str,
    destination_id: &str,
) -> QueryResult<Vec<DestinationRow>> {
    diesel::sql_query(
        "SELECT attribute_type, display_name, destination_id, value, code, active, detail \
         FROM destination_attributes \
         WHERE workspace_id = $1 AND attribute_type = $2 AND destination_id = $3 \
         ORDER BY display_name",
    )
    .bind::<BigInt, _>(workspace_id)
    .bind::<Text, _>(attribute_type)
    .bind::<Text, _>(destination_id)
    .load(conn)
    .await
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn older_events_are_stale_equal_content_is_unchanged_newer_content_writes() {
        let t = |s: i64| Utc.timestamp_opt(1_700_000_000 + s, 0).unwrap();
        assert_eq!(plan::<&str>(None, &"Travel", t(0)), Plan::Insert);
        assert_eq!(plan(Some((&"Travel", t(10))), &"Trips", t(5)), Plan::Stale);
        assert_eq!(
            plan(Some((&"Travel", t(10))), &"Travel", t(20)),
            Plan::Unchanged,
            "a redelivery under a new envelope"
        );
        assert_eq!(
            plan(Some((&"Travel", t(10))), &"Trips", t(10)),
            Plan::Update
        );
        assert_eq!(
            plan(Some((&"Travel", t(10))), &"Trips", t(11)),
            Plan::Update
        );
    }
}
