//! Applying Fyle attribute webhooks (`fyle.attribute-webhooks.v1`) to `expense_attributes`.
//!
//! Delivery guarantee: at-least-once from Kafka, exactly-once in effect. Each message is
//! applied in one transaction that first records its envelope id in `processed_events`; a
//! redelivered message finds its id there and changes nothing (not even the counters). The
//! consumer stores the offset only after this transaction commits.
//!
//! Failure policy: a message whose `data` cannot be understood is poison (dead-lettered, with
//! the error); a workspace fyle-sync has not yet heard of is retried a bounded number of times
//! (its snapshot is normally already here); a lost database connection waits for the database.
//! Events for another org's data, stale events and objects that carry no attribute are counted
//! as ignored and change nothing.

use attrsync_core::{
    derive::{self, Derived, DerivedAttribute, SelectField},
    normalise::content_hash,
    webhook::{FyleResource, FyleWebhookAction},
};
use attrsync_db::{
    Pool,
    outbox::{self, NewOutboxMessage},
};
use attrsync_kafka::{Handler, HandlerError, Incoming, envelope, relay::RelayHandle, workspaces};
use attrsync_proto::{
    Payload, time,
    v1::{ChangeKind, ExpenseAttributeChange, ExpenseAttributesChanged},
};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use prost::Message;
use serde_json::Value;

use crate::{
    plan::{OptionStep, Stored, UpsertPlan, change_kind, is_stale, plan_select_field, plan_upsert},
    schema::{expense_attributes as ea, processed_events, webhook_event_counts as counts},
};

/// The consumer of `fyle.attribute-webhooks.v1`.
#[derive(Clone)]
pub struct AttributeWebhookHandler {
    pub(crate) pool: Pool,
    /// The (prefixed) topic change events are published to.
    pub(crate) changes_topic: String,
    pub(crate) relay: RelayHandle,
}

impl std::fmt::Debug for AttributeWebhookHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttributeWebhookHandler")
            .field("changes_topic", &self.changes_topic)
            .finish_non_exhaustive()
    }
}

/// What one event amounted to.
#[derive(Debug, Clone, PartialEq)]
pub enum EventOutcome {
    /// Seen before (same envelope id): nothing done.
    Duplicate,
    /// Processed; these changes were made (possibly none, when the content was identical).
    Applied(Vec<ExpenseAttributeChange>),
    /// Counted, nothing changed, for this reason.
    Ignored(&'static str),
}

enum ApplyError {
    Db(diesel::result::Error),
    Handler(HandlerError),
}

impl From<diesel::result::Error> for ApplyError {
    fn from(e: diesel::result::Error) -> Self {
        ApplyError::Db(e)
    }
}

/// A database error that is about this message (retry a few times, then dead-letter) rather
/// than about the database being unreachable (wait for it).
fn classify(e: &diesel::result::Error) -> HandlerError {
    if attrsync_db::query_error_is_unavailable(e) {
        HandlerError::Unavailable(e.to_string())
    } else {
        HandlerError::Failed(e.to_string())
    }
}

impl Handler for AttributeWebhookHandler {
    async fn handle(&self, message: &Incoming<'_>) -> Result<(), HandlerError> {
        let Some(Payload::FyleAttributeWebhook(hook)) = &message.envelope.payload else {
            return Err(HandlerError::Poison(
                "expected a FyleAttributeWebhook payload".into(),
            ));
        };
        let data: Value = serde_json::from_str(&hook.data_json)
            .map_err(|e| HandlerError::Poison(format!("`data` is not JSON: {e}")))?;
        let event = Event {
            workspace_id: message.envelope.workspace_id,
            event_id: &message.envelope.event_id,
            action: FyleWebhookAction::from(hook.action.clone()),
            resource: FyleResource::from(hook.resource.clone()),
            data: &data,
        };
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| HandlerError::Unavailable(e.to_string()))?;
        let topic = &self.changes_topic;
        let outcome = conn
            .transaction::<_, ApplyError, _>(async |conn| apply_event(conn, &event, topic).await)
            .await;
        match outcome {
            Ok(EventOutcome::Applied(changes)) => {
                tracing::info!(changes = changes.len(), action = %event.action, resource = %event.resource, "webhook applied");
                if !changes.is_empty() {
                    self.relay.wake();
                }
                Ok(())
            }
            Ok(EventOutcome::Duplicate) => {
                tracing::info!("duplicate delivery ignored");
                Ok(())
            }
            Ok(EventOutcome::Ignored(reason)) => {
                tracing::info!(reason, "webhook ignored");
                Ok(())
            }
            Err(ApplyError::Db(e)) => Err(classify(&e)),
            Err(ApplyError::Handler(e)) => Err(e),
        }
    }
}

/// One attribute webhook, decoded.
#[derive(Debug)]
pub struct Event<'a> {
    pub workspace_id: i64,
    pub event_id: &'a str,
    pub action: FyleWebhookAction,
    pub resource: FyleResource,
    pub data: &'a Value,
}

/// Applies one event inside the caller's transaction.
async fn apply_event(
    conn: &mut AsyncPgConnection,
    event: &Event<'_>,
    changes_topic: &str,
) -> Result<EventOutcome, ApplyError> {
    let first_time = diesel::insert_into(processed_events::table)
        .values(processed_events::event_id.eq(event.event_id))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    if first_time == 0 {
        return Ok(EventOutcome::Duplicate);
    }
    // ingest accepted this webhook only for a workspace mapping knows, and mapping's snapshot
    // of it is durably on its way here: wait for it rather than dead-letter the event.
    let workspace = workspaces::find_any(conn, event.workspace_id)
        .await?
        .ok_or_else(|| {
            ApplyError::Handler(HandlerError::Unavailable(format!(
                "workspace {} is not in fyle-sync's projection yet",
                event.workspace_id
            )))
        })?;
    if workspace.deleted {
        count(conn, event.workspace_id, false).await?;
        return Ok(EventOutcome::Ignored("the workspace was deleted"));
    }
    let outcome = if event.data.get("org_id").and_then(Value::as_str)
        != Some(workspace.fyle_org_id.as_str())
    {
        EventOutcome::Ignored("data.org_id does not belong to the workspace")
    } else {
        apply_action(conn, event).await?
    };
    count(
        conn,
        event.workspace_id,
        matches!(outcome, EventOutcome::Applied(_)),
    )
    .await?;
    if let EventOutcome::Applied(changes) = &outcome
        && !changes.is_empty()
    {
        enqueue_changes(conn, event.workspace_id, changes_topic, changes.clone()).await?;
    }
    Ok(outcome)
}

async fn apply_action(
    conn: &mut AsyncPgConnection,
    event: &Event<'_>,
) -> Result<EventOutcome, ApplyError> {
    match event.action {
        FyleWebhookAction::Deleted => deactivate_deleted(conn, event).await,
        FyleWebhookAction::Created | FyleWebhookAction::Updated => {
            let derived = derive::derive(&event.resource, event.data)
                .map_err(|e| ApplyError::Handler(HandlerError::Poison(e.to_string())))?;
            match derived {
                Derived::Attribute(attribute) => upsert(conn, event.workspace_id, &attribute).await,
                Derived::SelectField(field) => {
                    apply_select_field(conn, event.workspace_id, &field).await
                }
                Derived::Skipped(reason) => Ok(EventOutcome::Ignored(match reason {
                    derive::SkipReason::InviteNotAccepted => "employee has not accepted the invite",
                    derive::SkipReason::NotASelectField => "expense field is not a SELECT",
                    derive::SkipReason::SystemField => {
                        "system expense field (its values are a resource of their own)"
                    }
                    derive::SkipReason::NotAnAttribute => "resource carries no attribute",
                })),
            }
        }
        _ => Ok(EventOutcome::Ignored("action does not change attributes")),
    }
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
    let change = |kind: ChangeKind, old_value: Option<String>| ExpenseAttributeChange {
        attribute_type: type_name.to_owned(),
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
    };
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
        (UpsertPlan::Unchanged, Some(row)) => {
            // Nothing visible changed, but the stored version must advance, or an older event
            // arriving later would not be recognised as stale.
            if attribute.source_updated_at > row.source_updated_at {
                diesel::update(ea::table.find(row.id))
                    .set(ea::source_updated_at.eq(attribute.source_updated_at))
                    .execute(conn)
                    .await?;
            }
            Ok(EventOutcome::Applied(Vec::new()))
        }
        (UpsertPlan::Unchanged, None) => Ok(EventOutcome::Applied(Vec::new())),
        (UpsertPlan::Stale, _) | (UpsertPlan::Update(_), None) => {
            Ok(EventOutcome::Ignored("stale: a newer version is stored"))
        }
    }
}

async fn apply_select_field(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    field: &SelectField,
) -> Result<EventOutcome, ApplyError> {
    let type_name = field.attribute_type.as_str();
    let existing: Vec<StoredRow> = ea::table
        .filter(ea::workspace_id.eq(workspace_id))
        .filter(ea::attribute_type.eq(type_name))
        .select(StoredRow::as_select())
        .for_update()
        .load(conn)
        .await?;
    let newest = existing.iter().filter_map(|r| r.source_updated_at).max();
    if is_stale(newest, field.source_updated_at) {
        return Ok(EventOutcome::Ignored(
            "stale: a newer version of the field is stored",
        ));
    }
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
async fn deactivate_deleted(
    conn: &mut AsyncPgConnection,
    event: &Event<'_>,
) -> Result<EventOutcome, ApplyError> {
    let id = match event.data.get("id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(ApplyError::Handler(HandlerError::Poison(
                "`data.id` is missing".into(),
            )));
        }
    };
    let incoming_updated = event
        .data
        .get("updated_at")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc));
    let active_rows = ea::table
        .filter(ea::workspace_id.eq(event.workspace_id))
        .filter(ea::active.eq(true));
    let rows: Vec<StoredRow> = match event.resource.fixed_attribute_type() {
        Some(attribute_type) => {
            active_rows
                .filter(ea::attribute_type.eq(attribute_type.as_str().to_owned()))
                .filter(ea::source_id.eq(id))
                .select(StoredRow::as_select())
                .for_update()
                .load(conn)
                .await?
        }
        // An expense field's options carry source ids "<field id>:<option>".
        None if matches!(event.resource, FyleResource::ExpenseField) => {
            active_rows
                .filter(ea::source_id.like(format!("{}:%", escape_like(&id))))
                .select(StoredRow::as_select())
                .for_update()
                .load(conn)
                .await?
        }
        None => return Ok(EventOutcome::Ignored("resource carries no attribute")),
    };
    let mut changes = Vec::new();
    for row in rows
        .iter()
        .filter(|r| !is_stale(r.source_updated_at, incoming_updated))
    {
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
                ea::source_updated_at.eq(incoming_updated.max(row.source_updated_at)),
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

/// `value` as a literal inside a LIKE pattern.
pub(crate) fn escape_like(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

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

async fn enqueue_changes(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    topic: &str,
    changes: Vec<ExpenseAttributeChange>,
) -> Result<(), ApplyError> {
    let payload = Payload::ExpenseAttributesChanged(ExpenseAttributesChanged {
        changes,
        origin: "webhook".into(),
    });
    let envelope = envelope::new(workspace_id, "fyle-sync", time::now(), payload);
    outbox::enqueue(
        conn,
        &[NewOutboxMessage {
            topic: topic.to_owned(),
            message_key: Some(workspace_id.to_string()),
            payload: envelope.encode_to_vec(),
        }],
    )
    .await?;
    Ok(())
}
