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
//! changes apply in order: the last change of a key is what is stored. An envelope without
//! `occurred_at` counts as now.
//!
//! **Set-based**: an envelope is applied with one read of the stored rows it names (locked,
//! `FOR UPDATE`), the version rule in memory, and one `INSERT … SELECT FROM unnest(…) ON
//! CONFLICT` of the rows it writes — a pull that carries a 5,000-option field costs two
//! statements per envelope, not 10,000 round trips (which held auto-mapping of everything
//! behind it for a minute). Fyle changes go further: the envelopes of Fyle changes the
//! consumer hands over together, whatever their workspaces, share those statements (and one
//! that locks their workspaces), each envelope's changes judged after the ones before it.
//!
//! **Auto-mapping** runs in the same transaction, only for rows this event (or this batch of
//! Fyle change envelopes) actually wrote and that are active, in the state the batch leaves
//! them — a value renamed within one batch is matched by its final name, one created and
//! deactivated within it is not matched: a Fyle value is matched against the QBO values of its target type; a QBO
//! value against the unmapped Fyle values it could answer ([`crate::mappings`]) — both
//! set-based (a handful of statements per envelope, not per value, each an index lookup per
//! key; a batch of Fyle change envelopes shares them across its workspaces, its rules read by
//! one query; employees one by one). So a mapping
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

use std::collections::{BTreeMap, HashMap, HashSet};

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
    sql_types::{Array, BigInt, Bool, Jsonb, Nullable, Text, Timestamptz},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use crate::mappings::{self, DestinationRow, SourceRow};

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
        apply_expense_events(tx.conn, std::slice::from_ref(event)).await
    }

    async fn apply_all(
        &self,
        tx: &mut Tx<'_>,
        events: &[Event<'_, ExpenseAttributesChanged>],
    ) -> Result<(), EffectError> {
        apply_expense_events(tx.conn, events).await
    }
}

/// Applies envelopes of `sync.expense-attributes.v1` (of any workspaces) in order: their
/// workspaces locked by one statement, their changes by [`apply_sources`], then auto-mapping
/// of the active rows written, every workspace's together (one rules read, one lookup of
/// what is mapped, one of the candidates).
async fn apply_expense_events(
    conn: &mut AsyncPgConnection,
    events: &[Event<'_, ExpenseAttributesChanged>],
) -> Result<(), EffectError> {
    let workspace_ids: Vec<i64> = events.iter().map(|e| e.workspace.workspace_id).collect();
    mappings::lock_workspaces(conn, &workspace_ids).await?;
    let envelopes: Vec<Envelope<'_>> = events
        .iter()
        .map(|e| Envelope {
            workspace_id: e.workspace.workspace_id,
            event_at: e.occurred_at.unwrap_or_else(Utc::now),
            changes: &e.payload.changes,
        })
        .collect();
    let mut written: BTreeMap<i64, Vec<SourceRow>> = BTreeMap::new();
    for (workspace_id, row) in apply_sources(conn, &envelopes).await? {
        written.entry(workspace_id).or_default().push(row);
    }
    written.retain(|_, rows| rows.iter().any(|r| r.active));
    if written.is_empty() {
        return Ok(());
    }
    let workspace_ids: Vec<i64> = written.keys().copied().collect();
    let rules = mappings::load_rules_of(conn, &workspace_ids).await?;
    let of: Vec<mappings::SourcesOf<'_>> = written
        .iter()
        .filter_map(|(workspace_id, sources)| {
            Some(mappings::SourcesOf {
                workspace_id: *workspace_id,
                rules: rules.get(workspace_id)?,
                sources,
            })
        })
        .collect();
    mappings::automap_sources_of(conn, &of).await?;
    Ok(())
}

/// One envelope's changes, with its workspace and time.
struct Envelope<'a> {
    workspace_id: i64,
    event_at: DateTime<Utc>,
    changes: &'a [ExpenseAttributeChange],
}

/// The changes of one envelope by key, in first-seen order, the last change of a key winning
/// (they share the envelope's time, so applied in order each would update the one before).
fn latest_by_key<K: Clone + Eq + std::hash::Hash, C>(
    changes: impl IntoIterator<Item = Result<(K, C), EffectError>>,
) -> Result<Vec<(K, C)>, EffectError> {
    let mut order: Vec<(K, C)> = Vec::new();
    let mut index: HashMap<K, usize> = HashMap::new();
    for change in changes {
        let (key, content) = change?;
        match index.get(&key) {
            Some(&i) => order[i].1 = content,
            None => {
                index.insert(key.clone(), order.len());
                order.push((key, content));
            }
        }
    }
    Ok(order)
}

/// A stored source row as the version rule reads it.
#[derive(QueryableByName)]
struct StoredSource {
    #[diesel(sql_type = BigInt)]
    workspace_id: i64,
    #[diesel(sql_type = Text)]
    attribute_type: String,
    #[diesel(sql_type = Text)]
    source_id: String,
    #[diesel(sql_type = Text)]
    value: String,
    #[diesel(sql_type = Text)]
    display_name: String,
    #[diesel(sql_type = Bool)]
    active: bool,
    #[diesel(sql_type = Nullable<Jsonb>)]
    detail: Option<Value>,
    #[diesel(sql_type = Timestamptz)]
    event_at: DateTime<Utc>,
}

/// A source row's key: (workspace, type, source id).
type SourceKey = (i64, String, String);

/// Applies envelopes' changes set-based: one read of the stored rows they name (locked), the
/// version rule in memory — envelope after envelope, each seeing what the ones before it
/// wrote — and one upsert of the rows written; returns those rows with their workspaces, in
/// the order first written.
async fn apply_sources(
    conn: &mut AsyncPgConnection,
    envelopes: &[Envelope<'_>],
) -> Result<Vec<(i64, SourceRow)>, EffectError> {
    let mut latest = Vec::with_capacity(envelopes.len());
    for envelope in envelopes {
        let changes = latest_by_key(envelope.changes.iter().map(|change| {
            if change.attribute_type.is_empty() || change.source_id.is_empty() {
                return Err(poison(
                    "a change needs an attribute type and a source id".into(),
                ));
            }
            let content = SourceContent {
                value: change.value.clone(),
                display_name: change.display_name.clone(),
                active: change.active,
                detail: detail(&change.detail_json)?,
            };
            let key = (
                envelope.workspace_id,
                change.attribute_type.clone(),
                change.source_id.clone(),
            );
            Ok((key, content))
        }))?;
        latest.push((envelope.event_at, changes));
    }
    let (mut workspace_ids, mut types, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    for ((workspace_id, attribute_type, source_id), _) in latest.iter().flat_map(|(_, c)| c) {
        workspace_ids.push(*workspace_id);
        types.push(attribute_type.as_str());
        ids.push(source_id.as_str());
    }
    let mut current: HashMap<SourceKey, (SourceContent, DateTime<Utc>)> =
        attrsync_db::prepared::sql(
            "SELECT s.workspace_id, s.attribute_type, s.source_id, s.value, s.display_name, \
                s.active, s.detail, s.event_at \
         FROM unnest($1::int8[], $2::text[], $3::text[]) \
             AS k(workspace_id, attribute_type, source_id) \
         CROSS JOIN LATERAL ( \
             SELECT * FROM source_attributes s \
             WHERE s.workspace_id = k.workspace_id AND s.attribute_type = k.attribute_type \
               AND s.source_id = k.source_id \
             FOR UPDATE) s",
        )
        .bind::<Array<BigInt>, _>(&workspace_ids)
        .bind::<Array<Text>, _>(&types)
        .bind::<Array<Text>, _>(&ids)
        .load::<StoredSource>(conn)
        .await?
        .into_iter()
        .map(|r| {
            let content = SourceContent {
                value: r.value,
                display_name: r.display_name,
                active: r.active,
                detail: r.detail,
            };
            (
                (r.workspace_id, r.attribute_type, r.source_id),
                (content, r.event_at),
            )
        })
        .collect();
    // Keys written, in the order first written; their final state is in `current`.
    let (mut written, mut seen) = (Vec::<SourceKey>::new(), HashSet::<SourceKey>::new());
    for (event_at, changes) in latest {
        for (key, incoming) in changes {
            let decision = plan(
                current.get(&key).map(|(c, at)| (c, *at)),
                &incoming,
                event_at,
            );
            count("source", decision);
            if matches!(decision, Plan::Insert | Plan::Update) {
                if seen.insert(key.clone()) {
                    written.push(key.clone());
                }
                current.insert(key, (incoming, event_at));
            }
        }
    }
    if written.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<(SourceKey, SourceContent, DateTime<Utc>)> = written
        .into_iter()
        .filter_map(|key| {
            let (content, at) = current.remove(&key)?;
            Some((key, content, at))
        })
        .collect();
    let column = |f: fn(&(SourceKey, SourceContent, DateTime<Utc>)) -> &str| -> Vec<&str> {
        rows.iter().map(f).collect()
    };
    let details: Vec<Option<String>> = rows
        .iter()
        .map(|(_, c, _)| c.detail.as_ref().map(Value::to_string))
        .collect();
    attrsync_db::prepared::sql(
        "INSERT INTO source_attributes \
           (workspace_id, attribute_type, source_id, value, display_name, active, detail, event_at) \
         SELECT w, t, id, v, d, a, j::jsonb, at \
         FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bool[], \
                     $7::text[], $8::timestamptz[]) \
           AS u(w, t, id, v, d, a, j, at) \
         ON CONFLICT (workspace_id, attribute_type, source_id) DO UPDATE SET \
           value = EXCLUDED.value, display_name = EXCLUDED.display_name, \
           active = EXCLUDED.active, detail = EXCLUDED.detail, event_at = EXCLUDED.event_at, \
           updated_at = now()",
    )
    .bind::<Array<BigInt>, _>(rows.iter().map(|((w, ..), ..)| *w).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(column(|((_, t, _), ..)| t))
    .bind::<Array<Text>, _>(column(|((_, _, id), ..)| id))
    .bind::<Array<Text>, _>(column(|(_, c, _)| &c.value))
    .bind::<Array<Text>, _>(column(|(_, c, _)| &c.display_name))
    .bind::<Array<Bool>, _>(rows.iter().map(|(_, c, _)| c.active).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(&details)
    .bind::<Array<Timestamptz>, _>(rows.iter().map(|(.., at)| *at).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|((workspace_id, attribute_type, source_id), c, _)| {
            let row = SourceRow {
                attribute_type,
                source_id,
                value: c.value,
                active: c.active,
                detail: c.detail,
            };
            (workspace_id, row)
        })
        .collect())
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
        let written =
            apply_destinations(conn, workspace_id, &event.payload.changes, event_at).await?;
        let mut active = Vec::new();
        for (row, was_active) in &written {
            if row.active {
                active.push(row);
            } else if *was_active != Some(false) {
                flag_deactivated(conn, workspace_id, row).await?;
            }
        }
        if active.is_empty() {
            return Ok(());
        }
        if let Some(rules) = mappings::load_rules(conn, workspace_id).await? {
            mappings::automap_destinations(conn, workspace_id, &rules, &active).await?;
        }
        Ok(())
    }

    async fn apply_all(
        &self,
        tx: &mut Tx<'_>,
        events: &[Event<'_, DestinationAttributesChanged>],
    ) -> Result<(), EffectError> {
        mappings::apply_each_locked(self, tx, events).await
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

/// A stored destination row as the version rule reads it.
#[derive(QueryableByName)]
struct StoredDestination {
    #[diesel(sql_type = Text)]
    attribute_type: String,
    #[diesel(sql_type = Text)]
    display_name: String,
    #[diesel(sql_type = Text)]
    destination_id: String,
    #[diesel(sql_type = Text)]
    value: String,
    #[diesel(sql_type = Nullable<Text>)]
    code: Option<String>,
    #[diesel(sql_type = Bool)]
    active: bool,
    #[diesel(sql_type = Nullable<Jsonb>)]
    detail: Option<Value>,
    #[diesel(sql_type = Timestamptz)]
    event_at: DateTime<Utc>,
}

/// A destination row's key: (type, display name, id).
type DestinationKey = (String, String, String);

/// [`apply_sources`] for destinations; each written row comes with its active flag before the
/// envelope (`None`: new).
async fn apply_destinations(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    changes: &[DestinationAttributeChange],
    event_at: DateTime<Utc>,
) -> Result<Vec<(DestinationRow, Option<bool>)>, EffectError> {
    let latest = latest_by_key(changes.iter().map(|change| {
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
        let content = DestinationContent {
            value: change.value.clone(),
            code: change.code.clone().filter(|c| !c.is_empty()),
            active: change.active,
            detail: detail(&change.detail_json)?,
        };
        Ok((
            (
                change.attribute_type.clone(),
                display_name,
                change.destination_id.clone(),
            ),
            content,
        ))
    }))?;
    let key_column = |f: fn(&DestinationKey) -> &str| -> Vec<&str> {
        latest.iter().map(|(k, _)| f(k)).collect()
    };
    let stored: HashMap<DestinationKey, (DestinationContent, DateTime<Utc>)> =
        attrsync_db::prepared::sql(
            "SELECT d.attribute_type, d.display_name, d.destination_id, d.value, d.code, \
                    d.active, d.detail, d.event_at \
             FROM unnest($1::text[], $2::text[], $3::text[]) \
               AS k(attribute_type, display_name, destination_id) \
             CROSS JOIN LATERAL ( \
                 SELECT * FROM destination_attributes d \
                 WHERE d.workspace_id = $4 AND d.attribute_type = k.attribute_type \
                   AND d.display_name = k.display_name AND d.destination_id = k.destination_id \
                 FOR UPDATE) d",
        )
        .bind::<Array<Text>, _>(key_column(|k| &k.0))
        .bind::<Array<Text>, _>(key_column(|k| &k.1))
        .bind::<Array<Text>, _>(key_column(|k| &k.2))
        .bind::<BigInt, _>(workspace_id)
        .load::<StoredDestination>(conn)
        .await?
        .into_iter()
        .map(|r| {
            let content = DestinationContent {
                value: r.value,
                code: r.code,
                active: r.active,
                detail: r.detail,
            };
            (
                (r.attribute_type, r.display_name, r.destination_id),
                (content, r.event_at),
            )
        })
        .collect();
    let written: Vec<(DestinationKey, DestinationContent, Option<bool>)> = latest
        .into_iter()
        .filter_map(|(key, incoming)| {
            let before = stored.get(&key);
            let decision = plan(before.map(|(c, at)| (c, *at)), &incoming, event_at);
            count("destination", decision);
            matches!(decision, Plan::Insert | Plan::Update)
                .then(|| (key, incoming, before.map(|(c, _)| c.active)))
        })
        .collect();
    if written.is_empty() {
        return Ok(Vec::new());
    }
    let column = |f: fn(&(DestinationKey, DestinationContent, Option<bool>)) -> String| {
        written.iter().map(f).collect::<Vec<String>>()
    };
    let codes: Vec<Option<&str>> = written.iter().map(|(_, c, _)| c.code.as_deref()).collect();
    let details: Vec<Option<String>> = written
        .iter()
        .map(|(_, c, _)| c.detail.as_ref().map(Value::to_string))
        .collect();
    let actives: Vec<bool> = written.iter().map(|(_, c, _)| c.active).collect();
    attrsync_db::prepared::sql(
        "INSERT INTO destination_attributes \
           (workspace_id, attribute_type, display_name, destination_id, value, code, active, \
            detail, event_at) \
         SELECT $1, t, n, id, v, c, a, j::jsonb, $2 \
         FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bool[], \
                     $9::text[]) AS u(t, n, id, v, c, a, j) \
         ON CONFLICT (workspace_id, attribute_type, display_name, destination_id) DO UPDATE SET \
           value = EXCLUDED.value, code = EXCLUDED.code, active = EXCLUDED.active, \
           detail = EXCLUDED.detail, event_at = EXCLUDED.event_at, updated_at = now()",
    )
    .bind::<BigInt, _>(workspace_id)
    .bind::<Timestamptz, _>(event_at)
    .bind::<Array<Text>, _>(column(|((t, _, _), _, _)| t.clone()))
    .bind::<Array<Text>, _>(column(|((_, n, _), _, _)| n.clone()))
    .bind::<Array<Text>, _>(column(|((_, _, id), _, _)| id.clone()))
    .bind::<Array<Text>, _>(column(|(_, c, _)| c.value.clone()))
    .bind::<Array<Nullable<Text>>, _>(&codes)
    .bind::<Array<Bool>, _>(&actives)
    .bind::<Array<Nullable<Text>>, _>(&details)
    .execute(conn)
    .await?;
    Ok(written
        .into_iter()
        .map(
            |((attribute_type, display_name, destination_id), c, was_active)| {
                (
                    DestinationRow {
                        attribute_type,
                        display_name,
                        destination_id,
                        value: c.value,
                        code: c.code,
                        active: c.active,
                        detail: c.detail,
                    },
                    was_active,
                )
            },
        )
        .collect())
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
