//! Applying Fyle attribute webhooks (`fyle.attribute-webhooks.v1`) to `expense_attributes`.
//!
//! Runs inside the platform's idempotent handler ([`attrsync_kafka::handler`]): the message is
//! applied at most once per envelope id, in one transaction, only for a known, live workspace.
//! This module writes only the effect. Pulls apply their pages through the same rules
//! ([`apply_live_page`]: the same version claim and upsert plan, set-based).
//!
//! **Versions.** Every Fyle object's newest version is kept in `source_versions`, deleted or
//! not: an event is applied only if its version supersedes the stored one, so a late, repeated
//! or reordered event changes nothing — including an UPDATED that arrives after a DELETED (a
//! tombstone is kept even when there was no row), a DELETED of a row that is already inactive,
//! and an event that changed nothing (a no-op SELECT field still records its version). A
//! version is Fyle's `updated_at` — or, for a DELETED without one, when ingest received it —
//! capped at receive time + `versions.max_clock_skew`, so a forged or skewed far-future stamp
//! cannot freeze a value; with equal times a delete wins, in either arrival order.
//!
//! **Dependent values** derive with their field ([`derive::derive_dependent_value`]): a
//! `DEPENDENT_SELECT` expense field is recorded in `dependent_fields` under its claimed version
//! (no attribute of its own), and a value's webhook reads its field from there. A value whose
//! field is not known yet (the field's webhook was lost) is ignored and counted; the next pull
//! of DEPENDENT_FIELD lists the field and stores the value. A change to the field alone (its
//! enabled flag, placeholder, mandatory flag) reaches its stored values at the next full
//! DEPENDENT_FIELD pass (daily in webhook mode), not at once: a value does not keep its own
//! enabled flag apart from the field's.
//!
//! Failure policy: a message whose `data` cannot be understood is poison (dead-lettered with
//! the error); events for another org's data, stale events and objects that carry no
//! attribute are counted as ignored and change nothing. Change events larger than
//! [`MAX_CHANGE_EVENT_BYTES`] are split, so a field with thousands of options is published, not
//! refused by Kafka.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use attrsync_core::{
    derive::{self, DependentField, Derived, DerivedAttribute, SelectField},
    normalise::content_hash,
    webhook::{FyleResource, FyleWebhookAction},
};
use attrsync_kafka::{
    HandlerError,
    envelope::chunk_by_encoded_len,
    handler::{EffectError, EffectHandler, Event, Tx},
    topics,
};
use attrsync_proto::v1::{
    ChangeKind, ExpenseAttributeChange, ExpenseAttributesChanged, FyleAttributeWebhook,
};
use chrono::{DateTime, Utc};
use diesel::{
    prelude::*,
    sql_types::{Array, BigInt, Bool, Jsonb, Nullable, Text, Timestamptz},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use crate::{
    plan::{
        OptionStep, Stored, UpsertPlan, change_kind, effective_version, plan_select_field,
        plan_upsert,
    },
    schema::{dependent_fields as df, expense_attributes as ea, webhook_event_counts as counts},
};

/// The largest change event published in one message (the platform's, shared with qbo-sync).
pub use attrsync_kafka::envelope::MAX_CHANGE_EVENT_BYTES;

/// The effect of `fyle.attribute-webhooks.v1`.
#[derive(Debug, Clone)]
pub struct AttributeWebhooks {
    /// How far past its receive time an event's `updated_at` may count.
    pub max_clock_skew: Duration,
}

/// What one event amounted to.
#[derive(Debug, Clone, PartialEq)]
pub enum EventOutcome {
    /// Processed; these changes were made (possibly none, when the content was identical).
    Applied(Vec<ExpenseAttributeChange>),
    /// Counted, nothing changed, for this reason.
    Ignored(&'static str),
}

type ApplyError = EffectError;

fn poison(reason: impl Into<String>) -> EffectError {
    EffectError::Handler(HandlerError::Poison(reason.into()))
}

impl EffectHandler for AttributeWebhooks {
    type Payload = FyleAttributeWebhook;

    async fn apply(
        &self,
        tx: &mut Tx<'_>,
        event: &Event<'_, FyleAttributeWebhook>,
    ) -> Result<(), EffectError> {
        let hook = &event.payload;
        let data: Value = serde_json::from_str(&hook.data_json)
            .map_err(|e| poison(format!("`data` is not JSON: {e}")))?;
        let workspace_id = event.workspace.workspace_id;
        let received_at = event.occurred_at.unwrap_or_else(Utc::now);
        let webhook = Webhook {
            workspace_id,
            action: FyleWebhookAction::from(hook.action.clone()),
            resource: FyleResource::from(hook.resource.clone()),
            data: &data,
            received_at,
            max_clock_skew: self.max_clock_skew,
        };
        let outcome = if data.get("org_id").and_then(Value::as_str)
            != Some(event.workspace.fyle_org_id.as_str())
        {
            EventOutcome::Ignored("data.org_id does not belong to the workspace")
        } else {
            apply_action(tx.conn, &webhook).await?
        };
        count(
            tx.conn,
            workspace_id,
            matches!(outcome, EventOutcome::Applied(_)),
        )
        .await?;
        match outcome {
            EventOutcome::Applied(changes) => {
                tracing::info!(changes = changes.len(), action = %webhook.action, resource = %webhook.resource, "webhook applied");
                for chunk in chunk_by_encoded_len(changes, MAX_CHANGE_EVENT_BYTES) {
                    let payload = ExpenseAttributesChanged {
                        changes: chunk,
                        origin: "webhook".into(),
                    };
                    tx.publish(topics::EXPENSE_ATTRIBUTES_CHANGED, workspace_id, payload);
                }
            }
            EventOutcome::Ignored(reason) => tracing::info!(reason, "webhook ignored"),
        }
        Ok(())
    }
}

/// One attribute webhook, decoded.
#[derive(Debug)]
pub struct Webhook<'a> {
    pub workspace_id: i64,
    pub action: FyleWebhookAction,
    pub resource: FyleResource,
    pub data: &'a Value,
    pub received_at: DateTime<Utc>,
    pub max_clock_skew: Duration,
}

impl Webhook<'_> {
    /// The Fyle object's id (`data.id`, a string or an integer).
    fn object_id(&self) -> Result<String, EffectError> {
        match self.data.get("id") {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            _ => Err(poison("`data.id` is missing")),
        }
    }

    fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.data
            .get("updated_at")
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
    }

    /// This event's version: see the module doc.
    fn version(&self) -> DateTime<Utc> {
        effective_version(self.updated_at(), self.received_at, self.max_clock_skew)
    }
}

/// Records `version` for the object unless a version that supersedes it is stored; returns
/// whether this event may be applied. Newer wins; with equal times a delete wins, and an
/// update repeats harmlessly over an update.
pub(crate) async fn claim_version(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    object_key: &str,
    version: DateTime<Utc>,
    deleted: bool,
) -> QueryResult<bool> {
    let claimed = claim_versions(
        conn,
        workspace_id,
        deleted,
        vec![object_key.to_owned()],
        vec![version],
    )
    .await?;
    Ok(!claimed.is_empty())
}

#[derive(QueryableByName)]
struct ClaimedKey {
    #[diesel(sql_type = Text)]
    object_key: String,
    #[diesel(sql_type = Bool)]
    first_seen: bool,
}

/// [`claim_version`] for several objects in one statement, in key order; returns the claimed
/// keys, each with whether it was seen for the first time (its version row was inserted, not
/// updated).
async fn claim_versions(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    deleted: bool,
    keys: Vec<String>,
    versions: Vec<DateTime<Utc>>,
) -> QueryResult<HashMap<String, bool>> {
    let claimed: Vec<ClaimedKey> = attrsync_db::prepared::sql(
        "INSERT INTO source_versions AS v (workspace_id, object_key, version, deleted) \
         SELECT $1, c.object_key, c.version, $2 \
         FROM unnest($3::text[], $4::timestamptz[]) AS c(object_key, version) \
         ORDER BY c.object_key \
         ON CONFLICT (workspace_id, object_key) DO UPDATE \
             SET version = excluded.version, deleted = excluded.deleted \
         WHERE (excluded.version, excluded.deleted) > (v.version, v.deleted) \
            OR (excluded.version = v.version AND NOT excluded.deleted AND NOT v.deleted) \
         RETURNING v.object_key, (v.xmax = 0) AS first_seen",
    )
    .bind::<BigInt, _>(workspace_id)
    .bind::<Bool, _>(deleted)
    .bind::<Array<Text>, _>(keys)
    .bind::<Array<Timestamptz>, _>(versions)
    .load(conn)
    .await?;
    Ok(claimed
        .into_iter()
        .map(|c| (c.object_key, c.first_seen))
        .collect())
}

async fn apply_action(
    conn: &mut AsyncPgConnection,
    event: &Webhook<'_>,
) -> Result<EventOutcome, ApplyError> {
    let deleted = match event.action {
        FyleWebhookAction::Deleted => true,
        FyleWebhookAction::Created | FyleWebhookAction::Updated => false,
        _ => return Ok(EventOutcome::Ignored("action does not change attributes")),
    };
    let carries_attributes = event.resource.fixed_attribute_type().is_some()
        || matches!(
            event.resource,
            FyleResource::ExpenseField | FyleResource::DependentField
        );
    if !carries_attributes {
        return Ok(EventOutcome::Ignored("resource carries no attribute"));
    }
    let id = event.object_id()?;
    let version = event.version();
    if deleted {
        let object_key = object_key(&event.resource, &id);
        if !claim_version(conn, event.workspace_id, &object_key, version, true).await? {
            return Ok(EventOutcome::Ignored("stale: a newer version is stored"));
        }
        return deactivate_deleted(conn, event.workspace_id, &event.resource, &id, version).await;
    }
    let derived = if event.resource == FyleResource::DependentField {
        let field_id =
            derive::dependent_value_field_id(event.data).map_err(|e| poison(e.to_string()))?;
        let Some(field) = stored_dependent_fields(conn, event.workspace_id, &[field_id])
            .await?
            .remove(&field_id)
        else {
            return Ok(EventOutcome::Ignored(
                "dependent value of a field not known yet (the next pull stores it)",
            ));
        };
        derive::derive_dependent_value(event.data, &field)
    } else {
        derive::derive(&event.resource, event.data)
    }
    .map_err(|e| poison(e.to_string()))?;
    apply_live(
        conn,
        event.workspace_id,
        &event.resource,
        &id,
        derived,
        version,
    )
    .await
}

/// `<RESOURCE>:<id>`, the key of a Fyle object in `source_versions`.
pub(crate) fn object_key(resource: &FyleResource, id: &str) -> String {
    format!("{}:{id}", resource.as_str())
}

/// Applies a live (not deleted) Fyle object at `version` — a webhook's `data` or a pulled row,
/// already derived by [`derive::derive`]: the version is claimed first, so an object older than
/// what is stored (a pull's copy of a row a webhook has since changed) changes nothing.
pub(crate) async fn apply_live(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    resource: &FyleResource,
    id: &str,
    derived: Derived,
    version: DateTime<Utc>,
) -> Result<EventOutcome, ApplyError> {
    let object_key = object_key(resource, id);
    if !claim_version(conn, workspace_id, &object_key, version, false).await? {
        return Ok(EventOutcome::Ignored("stale: a newer version is stored"));
    }
    match derived {
        Derived::Attribute(mut attribute) => {
            attribute.source_updated_at = Some(version);
            upsert(conn, workspace_id, &attribute).await
        }
        Derived::SelectField(mut field) => {
            field.source_updated_at = Some(version);
            apply_select_field(conn, workspace_id, &field).await
        }
        Derived::DependentField(mut field) => {
            field.source_updated_at = Some(version);
            record_dependent_field(conn, workspace_id, &field).await?;
            Ok(EventOutcome::Applied(Vec::new()))
        }
        Derived::Skipped(reason) => Ok(EventOutcome::Ignored(skip_reason(reason))),
    }
}

/// Stores a dependent field's definition (called under its claimed version).
async fn record_dependent_field(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    field: &DependentField,
) -> QueryResult<()> {
    let row = (
        df::workspace_id.eq(workspace_id),
        df::field_id.eq(field.field_id),
        df::field_name.eq(&field.field_name),
        df::parent_field_id.eq(field.parent_field_id),
        df::placeholder.eq(&field.placeholder),
        df::is_mandatory.eq(&field.is_mandatory),
        df::enabled.eq(field.enabled),
        df::source_updated_at.eq(field.source_updated_at),
    );
    diesel::insert_into(df::table)
        .values(row)
        .on_conflict((df::workspace_id, df::field_id))
        .do_update()
        .set((row.2, row.3, row.4, row.5, row.6, row.7))
        .execute(conn)
        .await?;
    Ok(())
}

/// The stored definitions of some dependent fields, by field id (unknown ones absent).
pub(crate) async fn stored_dependent_fields(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    field_ids: &[i64],
) -> QueryResult<HashMap<i64, DependentField>> {
    type Row = (
        i64,
        String,
        Option<i64>,
        Value,
        Value,
        bool,
        Option<DateTime<Utc>>,
    );
    let rows: Vec<Row> = df::table
        .filter(df::workspace_id.eq(workspace_id))
        .filter(df::field_id.eq_any(field_ids))
        .select((
            df::field_id,
            df::field_name,
            df::parent_field_id,
            df::placeholder,
            df::is_mandatory,
            df::enabled,
            df::source_updated_at,
        ))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(
            |(field_id, field_name, parent_field_id, placeholder, is_mandatory, enabled, at)| {
                let field = DependentField {
                    field_id,
                    field_name,
                    parent_field_id,
                    placeholder,
                    is_mandatory,
                    enabled,
                    source_updated_at: at,
                };
                (field_id, field)
            },
        )
        .collect())
}

/// A live Fyle object ready to apply: its id, what it derives to and its version.
#[derive(Debug)]
pub(crate) struct LiveObject {
    pub(crate) id: String,
    pub(crate) derived: Derived,
    pub(crate) version: DateTime<Utc>,
}

/// [`apply_live`] for a page of objects of one resource (a pull's page), in a constant number
/// of statements: every version claimed by one statement; objects seen for the first time
/// inserted by one (they have no row to look up); the others' rows locked and read by one,
/// planned by the same [`plan_upsert`] the webhook path uses, then one insert and one update.
/// The outcome of each object, in `objects` order, is what [`apply_live`] would have returned
/// for it. Custom SELECT and dependent fields, and a page naming an object twice (whose second
/// copy must see the first), take [`apply_live`] one object at a time.
pub(crate) async fn apply_live_page(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    resource: &FyleResource,
    objects: &[LiveObject],
) -> Result<Vec<EventOutcome>, ApplyError> {
    let mut ids: Vec<&str> = objects.iter().map(|o| o.id.as_str()).collect();
    ids.sort_unstable();
    let repeated = ids.windows(2).any(|w| w[0] == w[1]);
    if repeated
        || objects.iter().any(|o| {
            matches!(
                o.derived,
                Derived::SelectField(_) | Derived::DependentField(_)
            )
        })
    {
        let mut outcomes = Vec::with_capacity(objects.len());
        for o in objects {
            outcomes.push(
                apply_live(
                    conn,
                    workspace_id,
                    resource,
                    &o.id,
                    o.derived.clone(),
                    o.version,
                )
                .await?,
            );
        }
        return Ok(outcomes);
    }
    let (keys, versions) = objects
        .iter()
        .map(|o| (object_key(resource, &o.id), o.version))
        .unzip();
    let claimed = claim_versions(conn, workspace_id, false, keys, versions).await?;
    let mut outcomes: Vec<EventOutcome> = Vec::with_capacity(objects.len());
    // (position, attribute, content hash, whether its object was never seen before)
    let mut attributes: Vec<(usize, DerivedAttribute, String, bool)> = Vec::new();
    for (at, o) in objects.iter().enumerate() {
        let first_seen = claimed.get(&object_key(resource, &o.id)).copied();
        outcomes.push(match (&o.derived, first_seen) {
            (_, None) => EventOutcome::Ignored("stale: a newer version is stored"),
            (Derived::Attribute(attribute), Some(first_seen)) => {
                let mut attribute = attribute.clone();
                attribute.source_updated_at = Some(o.version);
                let hash = content_hash(
                    &attribute.value,
                    attribute.active,
                    attribute.detail.as_ref(),
                );
                attributes.push((at, attribute, hash, first_seen));
                EventOutcome::Applied(Vec::new())
            }
            (Derived::Skipped(reason), _) => EventOutcome::Ignored(skip_reason(*reason)),
            // Pages holding a select or dependent field were applied one object at a time above.
            (Derived::SelectField(_) | Derived::DependentField(_), _) => {
                EventOutcome::Ignored("expense field not applied")
            }
        });
    }
    let mut push_change = |at: usize, change: ExpenseAttributeChange| {
        if let Some(EventOutcome::Applied(changes)) = outcomes.get_mut(at) {
            changes.push(change);
        }
    };
    // An object never seen before has no row (every row is written under a claimed version):
    // it is inserted without a lookup. One that conflicts anyway is planned with the others.
    let first: Vec<(&DerivedAttribute, &str)> = attributes
        .iter()
        .filter(|(.., first_seen)| *first_seen)
        .map(|(_, a, hash, _)| (a, hash.as_str()))
        .collect();
    let inserted = insert_first_seen(conn, workspace_id, &first).await?;
    let mut planned: Vec<&(usize, DerivedAttribute, String, bool)> = Vec::new();
    for entry in &attributes {
        let (at, attribute, _, first_seen) = entry;
        if *first_seen && inserted.contains(&attribute_key(attribute)) {
            push_change(*at, attribute_change(attribute, ChangeKind::Created, None));
        } else {
            planned.push(entry);
        }
    }
    if planned.is_empty() {
        return Ok(outcomes);
    }
    let stored = lock_stored(conn, workspace_id, planned.iter().map(|(_, a, ..)| a)).await?;
    let mut inserts: Vec<(&DerivedAttribute, &str)> = Vec::new();
    let mut updates: Vec<(i64, &DerivedAttribute, &str)> = Vec::new();
    for (at, attribute, hash, _) in planned {
        let existing = stored.get(&attribute_key(attribute));
        let change = match (plan_upsert(existing, attribute, hash), existing) {
            (UpsertPlan::Insert, _) => {
                inserts.push((attribute, hash));
                Some(attribute_change(attribute, ChangeKind::Created, None))
            }
            (UpsertPlan::Update(kind), Some(row)) => {
                updates.push((row.id, attribute, hash));
                let old_value = (kind == ChangeKind::Renamed).then(|| row.value.clone());
                Some(attribute_change(attribute, kind, old_value))
            }
            (UpsertPlan::Unchanged | UpsertPlan::Update(_), _) => None,
        };
        if let Some(change) = change {
            push_change(*at, change);
        }
    }
    insert_attributes(conn, workspace_id, &inserts, Conflict::Fail).await?;
    update_attributes(conn, &updates).await?;
    Ok(outcomes)
}

/// An attribute's row key: (type, source id).
fn attribute_key(attribute: &DerivedAttribute) -> (String, String) {
    (
        attribute.attribute_type.as_str().to_owned(),
        attribute.source_id.clone(),
    )
}

/// What an insert does with a row whose (type, source id) is already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conflict {
    /// Leave it out (and out of the returned keys).
    Skip,
    /// Fail the statement: the caller looked and found no row.
    Fail,
}

/// Why a skipped object is ignored, as the event counters record it.
fn skip_reason(reason: derive::SkipReason) -> &'static str {
    match reason {
        derive::SkipReason::InviteNotAccepted => "employee has not accepted the invite",
        derive::SkipReason::NotASelectField => "expense field is not a SELECT",
        derive::SkipReason::SystemField => {
            "system expense field (its values are a resource of their own)"
        }
        derive::SkipReason::NotAnAttribute => "resource carries no attribute",
        derive::SkipReason::FieldUnknown => "dependent value of a field not known yet",
    }
}

#[derive(QueryableByName)]
struct LockedRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    attribute_type: String,
    #[diesel(sql_type = Text)]
    source_id: String,
    #[diesel(sql_type = Text)]
    value: String,
    #[diesel(sql_type = Bool)]
    active: bool,
    #[diesel(sql_type = Text)]
    content_hash: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    source_updated_at: Option<DateTime<Utc>>,
}

/// The stored rows of `attributes`, locked, by (type, source id): one index probe per key
/// (`LATERAL`), the page driving. On a table never analysed the planner probes through the
/// `(workspace_id, attribute_type, id)` index and filters `source_id` until autovacuum has
/// analysed it (docs/benchmarks.md, fyle-sync).
async fn lock_stored<'a>(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    attributes: impl Iterator<Item = &'a DerivedAttribute>,
) -> QueryResult<HashMap<(String, String), Stored>> {
    let (types, source_ids): (Vec<&str>, Vec<&str>) = attributes
        .map(|a| (a.attribute_type.as_str(), a.source_id.as_str()))
        .unzip();
    let rows: Vec<LockedRow> = attrsync_db::prepared::sql(
        "SELECT e.id, e.attribute_type, e.source_id, e.value, e.active, e.content_hash, \
                e.source_updated_at \
         FROM unnest($1::text[], $2::text[]) AS k(attribute_type, source_id) \
         CROSS JOIN LATERAL ( \
             SELECT * FROM expense_attributes \
             WHERE workspace_id = $3 AND attribute_type = k.attribute_type \
               AND source_id = k.source_id \
             FOR UPDATE \
         ) e",
    )
    .bind::<Array<Text>, _>(types)
    .bind::<Array<Text>, _>(source_ids)
    .bind::<BigInt, _>(workspace_id)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                (r.attribute_type, r.source_id),
                Stored {
                    id: r.id,
                    value: r.value,
                    active: r.active,
                    content_hash: r.content_hash,
                    source_updated_at: r.source_updated_at,
                },
            )
        })
        .collect())
}

/// The insert of a page's new rows; `$tail` says what a conflict does.
macro_rules! insert_rows_sql {
    ($tail:literal) => {
        concat!(
            "INSERT INTO expense_attributes (workspace_id, attribute_type, display_name, value, \
                                             source_id, active, detail, content_hash, \
                                             source_updated_at) \
             SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], \
                                      $6::bool[], $7::jsonb[], $8::text[], $9::timestamptz[]) ",
            $tail,
            " RETURNING attribute_type, source_id"
        )
    };
}

#[derive(QueryableByName)]
struct InsertedKey {
    #[diesel(sql_type = Text)]
    attribute_type: String,
    #[diesel(sql_type = Text)]
    source_id: String,
}

/// New attribute rows (with their content hashes), in one statement; returns the keys inserted.
async fn insert_attributes(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    rows: &[(&DerivedAttribute, &str)],
    conflict: Conflict,
) -> QueryResult<HashSet<(String, String)>> {
    if rows.is_empty() {
        return Ok(HashSet::new());
    }
    let text = match conflict {
        Conflict::Skip => {
            insert_rows_sql!("ON CONFLICT (workspace_id, attribute_type, source_id) DO NOTHING")
        }
        Conflict::Fail => insert_rows_sql!(""),
    };
    let column =
        |f: fn(&DerivedAttribute) -> &str| rows.iter().map(|(a, _)| f(a)).collect::<Vec<_>>();
    let inserted: Vec<InsertedKey> = attrsync_db::prepared::sql(text)
        .bind::<BigInt, _>(workspace_id)
        .bind::<Array<Text>, _>(column(|a| a.attribute_type.as_str()))
        .bind::<Array<Text>, _>(column(|a| &a.display_name))
        .bind::<Array<Text>, _>(column(|a| &a.value))
        .bind::<Array<Text>, _>(column(|a| &a.source_id))
        .bind::<Array<Bool>, _>(rows.iter().map(|(a, _)| a.active).collect::<Vec<_>>())
        .bind::<Array<Nullable<Jsonb>>, _>(
            rows.iter()
                .map(|(a, _)| a.detail.as_ref())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(rows.iter().map(|(_, h)| *h).collect::<Vec<_>>())
        .bind::<Array<Nullable<Timestamptz>>, _>(
            rows.iter()
                .map(|(a, _)| a.source_updated_at)
                .collect::<Vec<_>>(),
        )
        .load(conn)
        .await?;
    Ok(inserted
        .into_iter()
        .map(|k| (k.attribute_type, k.source_id))
        .collect())
}

/// The rows of objects seen for the first time: a plain insert (a quarter cheaper than `ON
/// CONFLICT` — mapping measured it, docs/benchmarks.md), inside a savepoint; should a row
/// exist after all, the insert is undone and repeated skipping the conflicts (those are
/// planned with the others). Returns the keys inserted.
async fn insert_first_seen(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    rows: &[(&DerivedAttribute, &str)],
) -> QueryResult<HashSet<(String, String)>> {
    if rows.is_empty() {
        return Ok(HashSet::new());
    }
    let plain = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            insert_attributes(conn, workspace_id, rows, Conflict::Fail).await
        })
        .await;
    match plain {
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => insert_attributes(conn, workspace_id, rows, Conflict::Skip).await,
        other => other,
    }
}

/// Changed attribute rows (by id, with their content hashes), in one statement.
async fn update_attributes(
    conn: &mut AsyncPgConnection,
    rows: &[(i64, &DerivedAttribute, &str)],
) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let column =
        |f: fn(&DerivedAttribute) -> &str| rows.iter().map(|(_, a, _)| f(a)).collect::<Vec<_>>();
    attrsync_db::prepared::sql(
        "UPDATE expense_attributes e \
         SET value = u.value, display_name = u.display_name, active = u.active, \
             detail = u.detail, content_hash = u.content_hash, \
             source_updated_at = coalesce(u.source_updated_at, e.source_updated_at), \
             updated_at = now() \
         FROM unnest($1::int8[], $2::text[], $3::text[], $4::bool[], $5::jsonb[], $6::text[], \
                     $7::timestamptz[]) \
              AS u(id, value, display_name, active, detail, content_hash, source_updated_at) \
         WHERE e.id = u.id",
    )
    .bind::<Array<BigInt>, _>(rows.iter().map(|(id, ..)| *id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(column(|a| &a.value))
    .bind::<Array<Text>, _>(column(|a| &a.display_name))
    .bind::<Array<Bool>, _>(rows.iter().map(|(_, a, _)| a.active).collect::<Vec<_>>())
    .bind::<Array<Nullable<Jsonb>>, _>(
        rows.iter()
            .map(|(_, a, _)| a.detail.as_ref())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Text>, _>(rows.iter().map(|(.., h)| *h).collect::<Vec<_>>())
    .bind::<Array<Nullable<Timestamptz>>, _>(
        rows.iter()
            .map(|(_, a, _)| a.source_updated_at)
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = ea)]
struct StoredRow {
    id: i64,
    value: String,
    active: bool,
    content_hash: String,
    source_updated_at: Option<DateTime<Utc>>,
    display_name: String,
    attribute_type: String,
    source_id: String,
}

impl StoredRow {
    fn facts(&self) -> Stored {
        Stored {
            id: self.id,
            value: self.value.clone(),
            active: self.active,
            content_hash: self.content_hash.clone(),
            source_updated_at: self.source_updated_at,
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = ea)]
struct NewAttribute<'a> {
    workspace_id: i64,
    attribute_type: &'a str,
    display_name: &'a str,
    value: &'a str,
    source_id: &'a str,
    active: bool,
    detail: Option<&'a Value>,
    content_hash: &'a str,
    source_updated_at: Option<DateTime<Utc>>,
}

async fn upsert(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    attribute: &DerivedAttribute,
) -> Result<EventOutcome, ApplyError> {
    let type_name = attribute.attribute_type.as_str();
    let existing: Option<StoredRow> = ea::table
        .filter(ea::workspace_id.eq(workspace_id))
        .filter(ea::attribute_type.eq(type_name))
        .filter(ea::source_id.eq(&attribute.source_id))
        .select(StoredRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?;
    let hash = content_hash(
        &attribute.value,
        attribute.active,
        attribute.detail.as_ref(),
    );
    let plan = plan_upsert(
        existing.as_ref().map(StoredRow::facts).as_ref(),
        attribute,
        &hash,
    );
    let change = |kind, old_value| attribute_change(attribute, kind, old_value);
    match (plan, existing) {
        (UpsertPlan::Insert, _) => {
            diesel::insert_into(ea::table)
                .values(NewAttribute {
                    workspace_id,
                    attribute_type: type_name,
                    display_name: &attribute.display_name,
                    value: &attribute.value,
                    source_id: &attribute.source_id,
                    active: attribute.active,
                    detail: attribute.detail.as_ref(),
                    content_hash: &hash,
                    source_updated_at: attribute.source_updated_at,
                })
                .execute(conn)
                .await?;
            Ok(EventOutcome::Applied(vec![change(
                ChangeKind::Created,
                None,
            )]))
        }
        (UpsertPlan::Update(kind), Some(row)) => {
            diesel::update(ea::table.find(row.id))
                .set((
                    ea::value.eq(&attribute.value),
                    ea::display_name.eq(&attribute.display_name),
                    ea::active.eq(attribute.active),
                    ea::detail.eq(attribute.detail.as_ref()),
                    ea::content_hash.eq(&hash),
                    ea::source_updated_at.eq(attribute.source_updated_at.or(row.source_updated_at)),
                    ea::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?;
            let old_value = (kind == ChangeKind::Renamed).then_some(row.value);
            Ok(EventOutcome::Applied(vec![change(kind, old_value)]))
        }
        // Nothing visible changed (the version was recorded in `source_versions`).
        (UpsertPlan::Unchanged | UpsertPlan::Update(_), _) => Ok(EventOutcome::Applied(Vec::new())),
    }
}

/// The change event of an attribute written as `kind`.
fn attribute_change(
    attribute: &DerivedAttribute,
    kind: ChangeKind,
    old_value: Option<String>,
) -> ExpenseAttributeChange {
    ExpenseAttributeChange {
        attribute_type: attribute.attribute_type.as_str().to_owned(),
        source_id: attribute.source_id.clone(),
        value: attribute.value.clone(),
        old_value,
        active: attribute.active,
        kind: kind as i32,
        display_name: attribute.display_name.clone(),
        detail_json: attribute
            .detail
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_default(),
    }
}

async fn apply_select_field(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    field: &SelectField,
) -> Result<EventOutcome, ApplyError> {
    let type_name = field.attribute_type.as_str();
    // Options only (`<field id>:<option>`): a dependent field whose name maps to the same type
    // keeps its values, keyed by their own ids without a `:`.
    let existing: Vec<StoredRow> = ea::table
        .filter(ea::workspace_id.eq(workspace_id))
        .filter(ea::attribute_type.eq(type_name))
        .filter(ea::source_id.like("%:%"))
        .select(StoredRow::as_select())
        .for_update()
        .load(conn)
        .await?;
    let facts: Vec<Stored> = existing.iter().map(StoredRow::facts).collect();
    let mut changes = Vec::new();
    for step in plan_select_field(&facts, field) {
        match step {
            OptionStep::Create { value, source_id } => {
                let hash = content_hash(&value, field.active, Some(&field.detail));
                diesel::insert_into(ea::table)
                    .values(NewAttribute {
                        workspace_id,
                        attribute_type: type_name,
                        display_name: &field.display_name,
                        value: &value,
                        source_id: &source_id,
                        active: field.active,
                        detail: Some(&field.detail),
                        content_hash: &hash,
                        source_updated_at: field.source_updated_at,
                    })
                    .execute(conn)
                    .await?;
                changes.push(option_change(
                    type_name,
                    &field.display_name,
                    source_id,
                    value,
                    field.active,
                    ChangeKind::Created,
                    &field.detail,
                ));
            }
            OptionStep::Deactivate { id, value } => {
                let Some(row) = existing.iter().find(|r| r.id == id) else {
                    continue;
                };
                let hash = content_hash(&value, false, Some(&field.detail));
                diesel::update(ea::table.find(id))
                    .set((
                        ea::active.eq(false),
                        ea::content_hash.eq(&hash),
                        ea::source_updated_at.eq(field.source_updated_at.or(row.source_updated_at)),
                        ea::updated_at.eq(diesel::dsl::now),
                    ))
                    .execute(conn)
                    .await?;
                changes.push(option_change(
                    type_name,
                    &row.display_name,
                    row.source_id.clone(),
                    value,
                    false,
                    ChangeKind::Deactivated,
                    &field.detail,
                ));
            }
        }
    }
    Ok(EventOutcome::Applied(changes))
}

fn option_change(
    type_name: &str,
    display_name: &str,
    source_id: String,
    value: String,
    active: bool,
    kind: ChangeKind,
    detail: &Value,
) -> ExpenseAttributeChange {
    ExpenseAttributeChange {
        attribute_type: type_name.to_owned(),
        source_id,
        value,
        old_value: None,
        active,
        kind: kind as i32,
        display_name: display_name.to_owned(),
        detail_json: detail.to_string(),
    }
}

/// DELETED: the attribute (or, for an expense field, every option of it) becomes inactive.
/// The caller has claimed the delete's version.
pub(crate) async fn deactivate_deleted(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    resource: &FyleResource,
    id: &str,
    version: DateTime<Utc>,
) -> Result<EventOutcome, ApplyError> {
    // Rows already inactive need nothing: the delete's version is recorded either way.
    let active_rows = ea::table
        .filter(ea::workspace_id.eq(workspace_id))
        .filter(ea::active.eq(true));
    let rows: Vec<StoredRow> = match (resource, resource.fixed_attribute_type()) {
        (_, Some(attribute_type)) => {
            active_rows
                .filter(ea::attribute_type.eq(attribute_type.as_str().to_owned()))
                .filter(ea::source_id.eq(id))
                .select(StoredRow::as_select())
                .for_update()
                .load(conn)
                .await?
        }
        // An expense field's options carry source ids "<field id>:<option>".
        (FyleResource::ExpenseField, None) => {
            active_rows
                .filter(ea::source_id.like(format!("{}:%", escape_like(id))))
                .select(StoredRow::as_select())
                .for_update()
                .load(conn)
                .await?
        }
        // A dependent value is a custom-type attribute keyed by its own id.
        (FyleResource::DependentField, None) => {
            active_rows
                .filter(ea::attribute_type.like(format!(
                    "{}%",
                    escape_like(attrsync_core::attribute::CUSTOM_PREFIX)
                )))
                .filter(ea::source_id.eq(id))
                .select(StoredRow::as_select())
                .for_update()
                .load(conn)
                .await?
        }
        _ => return Ok(EventOutcome::Ignored("resource carries no attribute")),
    };
    let mut changes = Vec::new();
    for row in &rows {
        let detail: Option<Value> = ea::table
            .find(row.id)
            .select(ea::detail)
            .first(conn)
            .await?;
        let hash = content_hash(&row.value, false, detail.as_ref());
        diesel::update(ea::table.find(row.id))
            .set((
                ea::active.eq(false),
                ea::content_hash.eq(&hash),
                ea::source_updated_at.eq(Some(version)),
                ea::updated_at.eq(diesel::dsl::now),
            ))
            .execute(conn)
            .await?;
        let kind = change_kind(&row.facts(), &row.value, false);
        changes.push(ExpenseAttributeChange {
            attribute_type: row.attribute_type.clone(),
            source_id: row.source_id.clone(),
            value: row.value.clone(),
            old_value: None,
            active: false,
            kind: kind as i32,
            display_name: row.display_name.clone(),
            detail_json: detail.as_ref().map(Value::to_string).unwrap_or_default(),
        });
    }
    Ok(EventOutcome::Applied(changes))
}

pub(crate) use attrsync_db::escape_like;

async fn count(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    applied: bool,
) -> Result<(), ApplyError> {
    let (a, i) = if applied { (1_i64, 0_i64) } else { (0, 1) };
    diesel::insert_into(counts::table)
        .values((
            counts::workspace_id.eq(workspace_id),
            counts::applied.eq(a),
            counts::ignored.eq(i),
            counts::last_event_at.eq(diesel::dsl::now),
        ))
        .on_conflict(counts::workspace_id)
        .do_update()
        .set((
            counts::applied.eq(counts::applied + a),
            counts::ignored.eq(counts::ignored + i),
            counts::last_event_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
