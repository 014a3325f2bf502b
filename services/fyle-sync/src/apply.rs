//! Applying Fyle attribute webhooks (`fyle.attribute-webhooks.v1`) to `expense_attributes`.
//!
//! Runs inside the platform's idempotent handler ([`attrsync_kafka::handler`]): the message is
//! applied at most once per envelope id, in one transaction, only for a known, live workspace.
//! This module writes only the effect. Each webhook is first planned from itself alone
//! ([`plan_webhook`]: ignore, delete, dependent value or live object). A batch the consumer
//! hands over together whose webhooks are all live objects (or ignored) is written set-based
//! whatever its workspaces ([`apply_live_objects`]: one statement claims every version, a
//! fixed few write the rows, one counts the events), so a batch costs the same round trips as
//! one webhook; a batch holding a delete or a dependent value is applied a webhook at a time.
//! Pulls apply their pages through the same function; a pass's pages are first tried as never
//! seen (an initial pull's: versions and rows inserted plainly, without claims) until one is not.
//!
//! **Versions.** Every Fyle object's newest version is kept in `source_versions`, deleted or
//! not: an event is applied only if its version supersedes the stored one, so a late, repeated
//! or reordered event changes nothing — including an UPDATED that arrives after a DELETED (a
//! tombstone is kept even when there was no row), a DELETED of a row that is already inactive,
//! and an event that changed nothing (a no-op SELECT field still records its version). A
//! version is Fyle's `updated_at` — or, for a DELETED without one, when ingest received it —
//! capped at receive time + `versions.max_clock_skew`, so a forged or skewed far-future stamp
//! cannot freeze a value; with equal times a delete wins, in either arrival order. The claim
//! is also the object's lock: it holds the version row until the transaction ends, and every
//! write of an attribute row of a fixed resource or a dependent value happens under its
//! object's claim, so those rows are read without a lock of their own. A SELECT field's options
//! are the exception: a field applied deactivates every option of its type it does not list,
//! another field's whose name maps to the same type included, so options are read
//! `FOR UPDATE` wherever they are written, in row id order whatever the plan (two fields of one
//! type lock their shared options in the same order). A claim that only repeats the stored
//! version writes nothing, so a re-sync's unchanged objects cost a read, not a new row version.
//!
//! **Key probes.** A row is looked up by its unique key `(workspace_id, source_id,
//! attribute_type)`, the type compared as `attribute_type || ''`. Until a table has been
//! analysed the planner prices every index led by `(workspace_id, attribute_type)` alike, and
//! it probed through the listing index, filtering every row of the type per key (3.8 ms per key
//! at 100,000 rows — a brand-new database's first re-sync, or its webhooks within autovacuum's
//! first minute). With the source id second in the key and the type behind an expression, the
//! unique key is the only index matching two columns, with statistics or without.
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
    sync::atomic::{AtomicBool, Ordering},
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
    schema::{dependent_fields as df, expense_attributes as ea},
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
        let data = event_data(event)?;
        let webhook = self.webhook(event, &data);
        let outcome = match plan_webhook(&webhook, &event.workspace.fyle_org_id)? {
            Step::Ignore(reason) => EventOutcome::Ignored(reason),
            step => apply_step(tx.conn, &webhook, step).await?,
        };
        let outcomes = vec![(webhook, outcome)];
        count(tx.conn, &outcomes).await?;
        publish(tx, outcomes);
        Ok(())
    }

    /// A batch whose webhooks are all live objects of the fixed resources (or ignored) is
    /// written by [`apply_live_objects`] in a constant number of statements, whatever its
    /// workspaces; one holding a delete or a dependent value (whose field an earlier webhook of
    /// the batch may define) is applied a webhook at a time.
    async fn apply_all(
        &self,
        tx: &mut Tx<'_>,
        events: &[Event<'_, FyleAttributeWebhook>],
    ) -> Result<(), EffectError> {
        let data = events
            .iter()
            .map(event_data)
            .collect::<Result<Vec<_>, _>>()?;
        let mut webhooks = Vec::with_capacity(events.len());
        let mut steps = Vec::with_capacity(events.len());
        for (event, data) in events.iter().zip(&data) {
            let webhook = self.webhook(event, data);
            let step = plan_webhook(&webhook, &event.workspace.fyle_org_id)?;
            if matches!(step, Step::Delete { .. } | Step::DependentValue { .. }) {
                for event in events {
                    self.apply(tx, event).await?;
                    tx.flush_if_large().await?;
                }
                return Ok(());
            }
            webhooks.push(webhook);
            steps.push(step);
        }
        let live: Vec<OwnedObject<'_>> = steps
            .iter()
            .zip(&webhooks)
            .filter_map(|(step, webhook)| match step {
                Step::Live(object) => Some(OwnedObject {
                    workspace_id: webhook.workspace_id,
                    resource: &webhook.resource,
                    object,
                }),
                _ => None,
            })
            .collect();
        let outcomes = apply_live_objects(tx.conn, &live).await?;
        debug_assert_eq!(outcomes.len(), live.len(), "one outcome per live object");
        let mut applied = outcomes.into_iter();
        let mut outcomes = Vec::with_capacity(steps.len());
        for (step, webhook) in steps.iter().zip(webhooks) {
            let outcome = match step {
                Step::Ignore(reason) => EventOutcome::Ignored(reason),
                _ => applied
                    .next()
                    .unwrap_or(EventOutcome::Ignored("not applied")),
            };
            outcomes.push((webhook, outcome));
        }
        count(tx.conn, &outcomes).await?;
        publish(tx, outcomes);
        Ok(())
    }
}

impl AttributeWebhooks {
    fn webhook<'a>(&self, event: &Event<'_, FyleAttributeWebhook>, data: &'a Value) -> Webhook<'a> {
        let hook = &event.payload;
        Webhook {
            workspace_id: event.workspace.workspace_id,
            action: FyleWebhookAction::from(hook.action.clone()),
            resource: FyleResource::from(hook.resource.clone()),
            data,
            received_at: event.occurred_at.unwrap_or_else(Utc::now),
            max_clock_skew: self.max_clock_skew,
        }
    }
}

fn event_data(event: &Event<'_, FyleAttributeWebhook>) -> Result<Value, EffectError> {
    serde_json::from_str(&event.payload.data_json)
        .map_err(|e| poison(format!("`data` is not JSON: {e}")))
}

/// Publishes each applied webhook's changes (in webhook order) and logs each outcome.
fn publish(tx: &mut Tx<'_>, outcomes: Vec<(Webhook<'_>, EventOutcome)>) {
    for (webhook, outcome) in outcomes {
        match outcome {
            EventOutcome::Applied(changes) => {
                tracing::info!(changes = changes.len(), action = %webhook.action, resource = %webhook.resource, "webhook applied");
                for chunk in chunk_by_encoded_len(changes, MAX_CHANGE_EVENT_BYTES) {
                    let payload = ExpenseAttributesChanged {
                        changes: chunk,
                        origin: "webhook".into(),
                    };
                    tx.publish(
                        topics::EXPENSE_ATTRIBUTES_CHANGED,
                        webhook.workspace_id,
                        payload,
                    );
                }
            }
            EventOutcome::Ignored(reason) => tracing::info!(reason, "webhook ignored"),
        }
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
        deleted,
        vec![workspace_id],
        vec![object_key.to_owned()],
        vec![version],
    )
    .await?;
    Ok(!claimed.is_empty())
}

#[derive(QueryableByName)]
struct ClaimedKey {
    #[diesel(sql_type = BigInt)]
    workspace_id: i64,
    #[diesel(sql_type = Text)]
    object_key: String,
    #[diesel(sql_type = Bool)]
    first_seen: bool,
}

/// [`claim_version`] for several objects (of any workspaces, each named once), in (workspace,
/// key) order so concurrent claims never deadlock; returns the claimed (workspace, key)s, each
/// with whether it was seen for the first time (its version row was inserted).
///
/// The claim is also the object's lock: `ON CONFLICT DO UPDATE` locks every conflicting row,
/// updated or not, until the transaction ends, so two transactions writing the same object run
/// one after the other — which is why the attribute rows themselves are read without a lock
/// ([`read_stored`]). A version row is written only when the claim supersedes it; an update
/// that repeats the stored version (a re-sync's unchanged objects, most of a page) leaves the
/// row as it is and is found claimed by a second read of the keys the first statement did not
/// return. That read sees exactly what was locked: whoever changed those rows committed before
/// the lock was granted, and nobody can change them until this transaction ends.
async fn claim_versions(
    conn: &mut AsyncPgConnection,
    deleted: bool,
    workspace_ids: Vec<i64>,
    keys: Vec<String>,
    versions: Vec<DateTime<Utc>>,
) -> QueryResult<HashMap<(i64, String), bool>> {
    let written: Vec<ClaimedKey> = attrsync_db::prepared::sql(
        "INSERT INTO source_versions AS v (workspace_id, object_key, version, deleted) \
         SELECT c.workspace_id, c.object_key, c.version, $1 \
         FROM unnest($2::int8[], $3::text[], $4::timestamptz[]) \
              AS c(workspace_id, object_key, version) \
         ORDER BY c.workspace_id, c.object_key \
         ON CONFLICT (workspace_id, object_key) DO UPDATE \
             SET version = excluded.version, deleted = excluded.deleted \
         WHERE (excluded.version, excluded.deleted) > (v.version, v.deleted) \
         RETURNING v.workspace_id, v.object_key, (v.xmax = 0) AS first_seen",
    )
    .bind::<Bool, _>(deleted)
    .bind::<Array<BigInt>, _>(&workspace_ids)
    .bind::<Array<Text>, _>(&keys)
    .bind::<Array<Timestamptz>, _>(&versions)
    .load(conn)
    .await?;
    let mut claimed: HashMap<(i64, String), bool> = written
        .into_iter()
        .map(|c| ((c.workspace_id, c.object_key), c.first_seen))
        .collect();
    if deleted || claimed.len() == keys.len() {
        return Ok(claimed);
    }
    // Not written: stale, or an update repeating the stored version (claimed, not first seen).
    let (mut rest_ids, mut rest_keys, mut rest_versions) = (Vec::new(), Vec::new(), Vec::new());
    for ((workspace_id, key), version) in workspace_ids.into_iter().zip(keys).zip(versions) {
        if !claimed.contains_key(&(workspace_id, key.clone())) {
            rest_ids.push(workspace_id);
            rest_keys.push(key);
            rest_versions.push(version);
        }
    }
    let repeated: Vec<ClaimedKey> = attrsync_db::prepared::sql(
        "SELECT v.workspace_id, v.object_key, false AS first_seen \
         FROM unnest($1::int8[], $2::text[], $3::timestamptz[]) \
              AS c(workspace_id, object_key, version) \
         JOIN source_versions v \
           ON v.workspace_id = c.workspace_id AND v.object_key = c.object_key \
         WHERE v.version = c.version AND NOT v.deleted",
    )
    .bind::<Array<BigInt>, _>(rest_ids)
    .bind::<Array<Text>, _>(rest_keys)
    .bind::<Array<Timestamptz>, _>(rest_versions)
    .load(conn)
    .await?;
    claimed.extend(
        repeated
            .into_iter()
            .map(|c| ((c.workspace_id, c.object_key), c.first_seen)),
    );
    Ok(claimed)
}

/// What one webhook asks for, decided from the webhook alone.
#[derive(Debug)]
enum Step {
    /// Nothing to write: counted as ignored, for this reason.
    Ignore(&'static str),
    /// The object was deleted at `version`.
    Delete { id: String, version: DateTime<Utc> },
    /// A dependent value, derived with its field's stored definition.
    DependentValue {
        id: String,
        field_id: i64,
        version: DateTime<Utc>,
    },
    /// A live object, derived.
    Live(LiveObject),
}

/// The [`Step`] a webhook of the workspace whose Fyle org is `org_id` asks for; an error for a
/// webhook whose `data` cannot be understood (poison).
fn plan_webhook(event: &Webhook<'_>, org_id: &str) -> Result<Step, EffectError> {
    if event.data.get("org_id").and_then(Value::as_str) != Some(org_id) {
        return Ok(Step::Ignore("data.org_id does not belong to the workspace"));
    }
    let deleted = match event.action {
        FyleWebhookAction::Deleted => true,
        FyleWebhookAction::Created | FyleWebhookAction::Updated => false,
        _ => return Ok(Step::Ignore("action does not change attributes")),
    };
    let carries_attributes = event.resource.fixed_attribute_type().is_some()
        || matches!(
            event.resource,
            FyleResource::ExpenseField | FyleResource::DependentField
        );
    if !carries_attributes {
        return Ok(Step::Ignore("resource carries no attribute"));
    }
    let id = event.object_id()?;
    let version = event.version();
    if deleted {
        return Ok(Step::Delete { id, version });
    }
    if event.resource == FyleResource::DependentField {
        let field_id =
            derive::dependent_value_field_id(event.data).map_err(|e| poison(e.to_string()))?;
        return Ok(Step::DependentValue {
            id,
            field_id,
            version,
        });
    }
    let derived = derive::derive(&event.resource, event.data).map_err(|e| poison(e.to_string()))?;
    Ok(Step::Live(LiveObject {
        id,
        derived,
        version,
    }))
}

/// Applies one webhook's [`Step`].
async fn apply_step(
    conn: &mut AsyncPgConnection,
    event: &Webhook<'_>,
    step: Step,
) -> Result<EventOutcome, ApplyError> {
    let workspace_id = event.workspace_id;
    match step {
        Step::Ignore(reason) => Ok(EventOutcome::Ignored(reason)),
        Step::Delete { id, version } => {
            let object_key = object_key(&event.resource, &id);
            if !claim_version(conn, workspace_id, &object_key, version, true).await? {
                return Ok(EventOutcome::Ignored("stale: a newer version is stored"));
            }
            deactivate_deleted(conn, workspace_id, &event.resource, &id, version).await
        }
        Step::DependentValue {
            id,
            field_id,
            version,
        } => {
            let Some(field) = stored_dependent_fields(conn, workspace_id, &[field_id])
                .await?
                .remove(&field_id)
            else {
                return Ok(EventOutcome::Ignored(
                    "dependent value of a field not known yet (the next pull stores it)",
                ));
            };
            let derived = derive::derive_dependent_value(event.data, &field)
                .map_err(|e| poison(e.to_string()))?;
            apply_live(conn, workspace_id, &event.resource, &id, derived, version).await
        }
        Step::Live(LiveObject {
            id,
            derived,
            version,
        }) => apply_live(conn, workspace_id, &event.resource, &id, derived, version).await,
    }
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

/// [`apply_live`] for a page of objects of one resource (a pull's page): see
/// [`apply_live_objects`]. While `new_so_far` holds, a page of at least [`PLAIN_INSERT_FROM`]
/// objects is first tried as never seen ([`insert_never_seen`]: an initial pull's pages); the
/// first page that is not clears it, so the rest of the pass claims at once.
pub(crate) async fn apply_live_page(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    resource: &FyleResource,
    objects: &[LiveObject],
    new_so_far: &AtomicBool,
) -> Result<Vec<EventOutcome>, ApplyError> {
    let owned: Vec<OwnedObject<'_>> = objects
        .iter()
        .map(|object| OwnedObject {
            workspace_id,
            resource,
            object,
        })
        .collect();
    if owned.len() >= PLAIN_INSERT_FROM && new_so_far.load(Ordering::Relaxed) {
        if let Some(outcomes) = insert_never_seen(conn, &owned).await? {
            return Ok(outcomes);
        }
        new_so_far.store(false, Ordering::Relaxed);
    }
    apply_live_objects(conn, &owned).await
}

/// A live object of one workspace's resource.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OwnedObject<'a> {
    pub(crate) workspace_id: i64,
    pub(crate) resource: &'a FyleResource,
    pub(crate) object: &'a LiveObject,
}

impl OwnedObject<'_> {
    fn version_key(&self) -> (i64, String) {
        (
            self.workspace_id,
            object_key(self.resource, &self.object.id),
        )
    }
}

/// [`apply_live`] for many objects (a pull's page, or a batch of webhooks of several
/// workspaces) in a constant number of statements: every version claimed by one statement;
/// objects seen for the first time inserted by one (they have no row to look up); the
/// others' rows read by one, planned by the same [`plan_upsert`] the single path
/// uses, then one insert and one update. The outcome of each object, in `objects` order, is
/// what [`apply_live`] would have returned for it. Custom SELECT and dependent fields, and a
/// set naming an object twice (whose second copy must see the first), take [`apply_live`]
/// one object at a time, in order.
pub(crate) async fn apply_live_objects(
    conn: &mut AsyncPgConnection,
    objects: &[OwnedObject<'_>],
) -> Result<Vec<EventOutcome>, ApplyError> {
    let mut keys: Vec<(i64, String)> = objects.iter().map(OwnedObject::version_key).collect();
    keys.sort_unstable();
    let repeated = keys.windows(2).any(|w| w[0] == w[1]);
    if repeated
        || objects.iter().any(|o| {
            matches!(
                o.object.derived,
                Derived::SelectField(_) | Derived::DependentField(_)
            )
        })
    {
        let mut outcomes = Vec::with_capacity(objects.len());
        for o in objects {
            outcomes.push(
                apply_live(
                    conn,
                    o.workspace_id,
                    o.resource,
                    &o.object.id,
                    o.object.derived.clone(),
                    o.object.version,
                )
                .await?,
            );
        }
        return Ok(outcomes);
    }
    let (workspace_ids, keys) = objects.iter().map(OwnedObject::version_key).unzip();
    let versions = objects.iter().map(|o| o.object.version).collect();
    let claimed = claim_versions(conn, false, workspace_ids, keys, versions).await?;
    let mut outcomes: Vec<EventOutcome> = Vec::with_capacity(objects.len());
    // (position, attribute row, whether its object was never seen before)
    let mut attributes: Vec<(usize, RowToWrite, bool)> = Vec::new();
    for (at, o) in objects.iter().enumerate() {
        let first_seen = claimed.get(&o.version_key()).copied();
        outcomes.push(match (&o.object.derived, first_seen) {
            (_, None) => EventOutcome::Ignored("stale: a newer version is stored"),
            (Derived::Attribute(attribute), Some(first_seen)) => {
                let mut attribute = attribute.clone();
                attribute.source_updated_at = Some(o.object.version);
                attributes.push((at, RowToWrite::new(o.workspace_id, attribute), first_seen));
                EventOutcome::Applied(Vec::new())
            }
            (Derived::Skipped(reason), _) => EventOutcome::Ignored(skip_reason(*reason)),
            // Sets holding a select or dependent field were applied one object at a time above.
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
    let first: Vec<&RowToWrite> = attributes
        .iter()
        .filter(|(.., first_seen)| *first_seen)
        .map(|(_, row, _)| row)
        .collect();
    let inserted = insert_first_seen(conn, &first).await?;
    let mut planned: Vec<&(usize, RowToWrite, bool)> = Vec::new();
    for entry in &attributes {
        let (at, row, first_seen) = entry;
        if *first_seen && inserted.contains(&row.key()) {
            push_change(
                *at,
                attribute_change(&row.attribute, ChangeKind::Created, None),
            );
        } else {
            planned.push(entry);
        }
    }
    if planned.is_empty() {
        return Ok(outcomes);
    }
    let stored = read_stored(conn, planned.iter().map(|(_, row, _)| row)).await?;
    let mut inserts: Vec<&RowToWrite> = Vec::new();
    let mut updates: Vec<(i64, &RowToWrite)> = Vec::new();
    for (at, row, _) in planned {
        let existing = stored.get(&row.key());
        let change = match (plan_upsert(existing, &row.attribute, &row.hash), existing) {
            (UpsertPlan::Insert, _) => {
                inserts.push(row);
                Some(attribute_change(&row.attribute, ChangeKind::Created, None))
            }
            (UpsertPlan::Update(kind), Some(stored)) => {
                updates.push((stored.id, row));
                let old_value = (kind == ChangeKind::Renamed).then(|| stored.value.clone());
                Some(attribute_change(&row.attribute, kind, old_value))
            }
            (UpsertPlan::Unchanged | UpsertPlan::Update(_), _) => None,
        };
        if let Some(change) = change {
            push_change(*at, change);
        }
    }
    insert_attributes(conn, &inserts, Conflict::Fail).await?;
    update_attributes(conn, &updates).await?;
    Ok(outcomes)
}

/// [`apply_live_objects`] for a set none of whose objects was ever seen (an initial pull's
/// page): their versions and rows inserted plainly, in one savepoint — a plain insert costs
/// less than a claim's `ON CONFLICT` and needs no lookup; the outcomes are the ones the claims
/// would give. `None`, with nothing written, when any object has a version row (or, stored
/// before versions were, an attribute row), is named twice, or is a SELECT or dependent field:
/// the caller then claims as usual.
async fn insert_never_seen(
    conn: &mut AsyncPgConnection,
    objects: &[OwnedObject<'_>],
) -> Result<Option<Vec<EventOutcome>>, ApplyError> {
    let mut rows: Vec<RowToWrite> = Vec::new();
    let mut outcomes: Vec<EventOutcome> = Vec::with_capacity(objects.len());
    for o in objects {
        outcomes.push(match &o.object.derived {
            Derived::Attribute(attribute) => {
                let mut attribute = attribute.clone();
                attribute.source_updated_at = Some(o.object.version);
                let row = RowToWrite::new(o.workspace_id, attribute);
                let created = attribute_change(&row.attribute, ChangeKind::Created, None);
                rows.push(row);
                EventOutcome::Applied(vec![created])
            }
            Derived::Skipped(reason) => EventOutcome::Ignored(skip_reason(*reason)),
            Derived::SelectField(_) | Derived::DependentField(_) => return Ok(None),
        });
    }
    let (workspace_ids, keys): (Vec<i64>, Vec<String>) =
        objects.iter().map(OwnedObject::version_key).unzip();
    let versions: Vec<DateTime<Utc>> = objects.iter().map(|o| o.object.version).collect();
    let to_insert: Vec<&RowToWrite> = rows.iter().collect();
    let written = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            attrsync_db::prepared::sql(
                "INSERT INTO source_versions (workspace_id, object_key, version, deleted) \
                 SELECT c.workspace_id, c.object_key, c.version, false \
                 FROM unnest($1::int8[], $2::text[], $3::timestamptz[]) \
                      AS c(workspace_id, object_key, version) \
                 ORDER BY c.workspace_id, c.object_key",
            )
            .bind::<Array<BigInt>, _>(workspace_ids)
            .bind::<Array<Text>, _>(keys)
            .bind::<Array<Timestamptz>, _>(versions)
            .execute(conn)
            .await?;
            insert_attributes(conn, &to_insert, Conflict::Fail).await
        })
        .await;
    match written {
        Ok(_) => Ok(Some(outcomes)),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// An attribute to write, with its workspace and content hash.
#[derive(Debug)]
struct RowToWrite {
    workspace_id: i64,
    attribute: DerivedAttribute,
    hash: String,
}

impl RowToWrite {
    fn new(workspace_id: i64, attribute: DerivedAttribute) -> Self {
        let hash = content_hash(
            &attribute.value,
            attribute.active,
            attribute.detail.as_ref(),
        );
        Self {
            workspace_id,
            attribute,
            hash,
        }
    }

    /// Its row's key: (workspace, type, source id).
    fn key(&self) -> RowKey {
        (
            self.workspace_id,
            self.attribute.attribute_type.as_str().to_owned(),
            self.attribute.source_id.clone(),
        )
    }
}

/// An attribute row's key: (workspace, type, source id).
type RowKey = (i64, String, String);

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
struct ReadRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    workspace_id: i64,
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

/// The stored rows of `rows`, by key: one index probe per key (`LATERAL`), the keys driving.
/// Read without a row lock: the caller holds the objects' version claims, and every write of
/// an attribute row happens under its object's claim ([`claim_versions`]). The type is
/// compared as `attribute_type || ''` (module doc, "Key probes").
async fn read_stored<'a>(
    conn: &mut AsyncPgConnection,
    rows: impl Iterator<Item = &'a RowToWrite>,
) -> QueryResult<HashMap<RowKey, Stored>> {
    let (mut workspace_ids, mut types, mut source_ids) = (Vec::new(), Vec::new(), Vec::new());
    for row in rows {
        workspace_ids.push(row.workspace_id);
        types.push(row.attribute.attribute_type.as_str());
        source_ids.push(row.attribute.source_id.as_str());
    }
    let rows: Vec<ReadRow> = attrsync_db::prepared::sql(
        "SELECT e.id, e.workspace_id, e.attribute_type, e.source_id, e.value, e.active, \
                e.content_hash, e.source_updated_at \
         FROM unnest($1::int8[], $2::text[], $3::text[]) \
              AS k(workspace_id, attribute_type, source_id) \
         CROSS JOIN LATERAL ( \
             SELECT * FROM expense_attributes \
             WHERE workspace_id = k.workspace_id AND source_id = k.source_id \
               AND attribute_type || '' = k.attribute_type \
         ) e",
    )
    .bind::<Array<BigInt>, _>(workspace_ids)
    .bind::<Array<Text>, _>(types)
    .bind::<Array<Text>, _>(source_ids)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                (r.workspace_id, r.attribute_type, r.source_id),
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
             SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], \
                                  $6::bool[], $7::jsonb[], $8::text[], $9::timestamptz[]) ",
            $tail,
            " RETURNING workspace_id, attribute_type, source_id"
        )
    };
}

#[derive(QueryableByName)]
struct InsertedKey {
    #[diesel(sql_type = BigInt)]
    workspace_id: i64,
    #[diesel(sql_type = Text)]
    attribute_type: String,
    #[diesel(sql_type = Text)]
    source_id: String,
}

/// New attribute rows (with their content hashes), in one statement; returns the keys inserted.
/// New attribute rows (with their workspaces and content hashes), in one statement; returns
/// the keys inserted.
async fn insert_attributes(
    conn: &mut AsyncPgConnection,
    rows: &[&RowToWrite],
    conflict: Conflict,
) -> QueryResult<HashSet<RowKey>> {
    if rows.is_empty() {
        return Ok(HashSet::new());
    }
    let text = match conflict {
        Conflict::Skip => {
            insert_rows_sql!("ON CONFLICT (workspace_id, attribute_type, source_id) DO NOTHING")
        }
        Conflict::Fail => insert_rows_sql!(""),
    };
    let column = |f: fn(&DerivedAttribute) -> &str| {
        rows.iter().map(|row| f(&row.attribute)).collect::<Vec<_>>()
    };
    let inserted: Vec<InsertedKey> = attrsync_db::prepared::sql(text)
        .bind::<Array<BigInt>, _>(rows.iter().map(|row| row.workspace_id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(column(|a| a.attribute_type.as_str()))
        .bind::<Array<Text>, _>(column(|a| &a.display_name))
        .bind::<Array<Text>, _>(column(|a| &a.value))
        .bind::<Array<Text>, _>(column(|a| &a.source_id))
        .bind::<Array<Bool>, _>(
            rows.iter()
                .map(|row| row.attribute.active)
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Jsonb>>, _>(
            rows.iter()
                .map(|row| row.attribute.detail.as_ref())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(rows.iter().map(|row| row.hash.as_str()).collect::<Vec<_>>())
        .bind::<Array<Nullable<Timestamptz>>, _>(
            rows.iter()
                .map(|row| row.attribute.source_updated_at)
                .collect::<Vec<_>>(),
        )
        .load(conn)
        .await?;
    Ok(inserted
        .into_iter()
        .map(|k| (k.workspace_id, k.attribute_type, k.source_id))
        .collect())
}

/// The rows of objects seen for the first time. A page's worth: a plain insert (a quarter
/// cheaper than `ON CONFLICT` — mapping measured it, docs/benchmarks.md), inside a savepoint;
/// should a row exist after all, the insert is undone and repeated skipping the conflicts
/// (those are planned with the others). A few rows (a batch of webhooks) skip the conflicts
/// at once, sparing the savepoint's two round trips, which cost them more than the insert
/// saves. Returns the keys inserted.
async fn insert_first_seen(
    conn: &mut AsyncPgConnection,
    rows: &[&RowToWrite],
) -> QueryResult<HashSet<RowKey>> {
    if rows.is_empty() {
        return Ok(HashSet::new());
    }
    if rows.len() < PLAIN_INSERT_FROM {
        return insert_attributes(conn, rows, Conflict::Skip).await;
    }
    let plain = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            insert_attributes(conn, rows, Conflict::Fail).await
        })
        .await;
    match plain {
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => insert_attributes(conn, rows, Conflict::Skip).await,
        other => other,
    }
}

/// From this many objects a page is first tried as never seen ([`apply_live_page`]), and
/// [`insert_first_seen`] inserts first-seen rows plainly, in a savepoint.
const PLAIN_INSERT_FROM: usize = 64;

/// Changed attribute rows (by id, with their content hashes), in one statement.
async fn update_attributes(
    conn: &mut AsyncPgConnection,
    rows: &[(i64, &RowToWrite)],
) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&DerivedAttribute) -> &str| {
        rows.iter()
            .map(|(_, row)| f(&row.attribute))
            .collect::<Vec<_>>()
    };
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
    .bind::<Array<BigInt>, _>(rows.iter().map(|(id, _)| *id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(column(|a| &a.value))
    .bind::<Array<Text>, _>(column(|a| &a.display_name))
    .bind::<Array<Bool>, _>(
        rows.iter()
            .map(|(_, row)| row.attribute.active)
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Nullable<Jsonb>>, _>(
        rows.iter()
            .map(|(_, row)| row.attribute.detail.as_ref())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Text>, _>(
        rows.iter()
            .map(|(_, row)| row.hash.as_str())
            .collect::<Vec<_>>(),
    )
    .bind::<Array<Nullable<Timestamptz>>, _>(
        rows.iter()
            .map(|(_, row)| row.attribute.source_updated_at)
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
        .filter(ea::source_id.eq(&attribute.source_id))
        .filter(ea::attribute_type.concat("").eq(type_name))
        .select(StoredRow::as_select())
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
    // keeps its values, keyed by their own ids without a `:`. Locked: another SELECT field
    // whose name maps to the same type holds options of this type under its own claim.
    let existing: Vec<StoredRow> = ea::table
        .filter(ea::workspace_id.eq(workspace_id))
        .filter(ea::attribute_type.eq(type_name))
        .filter(ea::source_id.like("%:%"))
        .order(ea::id)
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
                .filter(ea::source_id.eq(id))
                .filter(
                    ea::attribute_type
                        .concat("")
                        .eq(attribute_type.as_str().to_owned()),
                )
                .select(StoredRow::as_select())
                .load(conn)
                .await?
        }
        // An expense field's options carry source ids "<field id>:<option>".
        // Locked: a field whose name maps to the same type may deactivate them under its claim.
        (FyleResource::ExpenseField, None) => {
            active_rows
                .filter(ea::source_id.like(format!("{}:%", escape_like(id))))
                .order(ea::id)
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

/// Counts each webhook as applied or ignored: one statement, one row per workspace.
async fn count(
    conn: &mut AsyncPgConnection,
    outcomes: &[(Webhook<'_>, EventOutcome)],
) -> Result<(), ApplyError> {
    let mut per_workspace: std::collections::BTreeMap<i64, (i64, i64)> = Default::default();
    for (webhook, outcome) in outcomes {
        let (applied, ignored) = per_workspace.entry(webhook.workspace_id).or_default();
        match outcome {
            EventOutcome::Applied(_) => *applied += 1,
            EventOutcome::Ignored(_) => *ignored += 1,
        }
    }
    let (workspace_ids, (applied, ignored)): (Vec<i64>, (Vec<i64>, Vec<i64>)) =
        per_workspace.into_iter().unzip();
    attrsync_db::prepared::sql(
        "INSERT INTO webhook_event_counts AS c (workspace_id, applied, ignored, last_event_at) \
         SELECT n.workspace_id, n.applied, n.ignored, now() \
         FROM unnest($1::int8[], $2::int8[], $3::int8[]) AS n(workspace_id, applied, ignored) \
         ON CONFLICT (workspace_id) DO UPDATE \
             SET applied = c.applied + excluded.applied, ignored = c.ignored + excluded.ignored, \
                 last_event_at = now()",
    )
    .bind::<Array<BigInt>, _>(workspace_ids)
    .bind::<Array<BigInt>, _>(applied)
    .bind::<Array<BigInt>, _>(ignored)
    .execute(conn)
    .await?;
    Ok(())
}
