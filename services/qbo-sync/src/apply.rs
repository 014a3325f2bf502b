//! Applying QBO entities to one workspace's destination attributes — the one path every sync
//! mode (full, incremental, targeted after a webhook) goes through, inside the caller's
//! transaction:
//!
//! 1. each entity is derived with the workspace's rules ([`rules::derive`]);
//! 2. the drafts are written in one set-based upsert ([`store::upsert`]), which ignores copies
//!    older than the stored one and rows whose content did not change;
//! 3. rows the entity no longer fills — an Account whose type moved it from `ACCOUNT` to
//!    `BANK_ACCOUNT`, an item turned into a category — are deactivated
//!    ([`rules::retired_slots`], [`store::deactivate`]);
//! 4. every written row is classified against what it replaced ([`rules::classify_change`]):
//!    the changes, and only they, become `sync.destination-attributes.v1` events, published
//!    through the outbox in the same transaction ([`publish`]), split under
//!    [`MAX_CHANGE_EVENT_BYTES`].
//!
//! Failure policy: an entity that does not derive is skipped and counted
//! (`qbo_sync_entities_skipped_total{reason}`); what was stored for it stays unless the rules
//! say the skip retires it. Database errors abort the caller's transaction.

use attrsync_config::KafkaConfig;
use attrsync_db::outbox;
use attrsync_kafka::{
    envelope::{self, MAX_CHANGE_EVENT_BYTES, chunk_by_encoded_len},
    topics::{self, TopicPayload as _},
};
use attrsync_proto::v1::{self, DestinationAttributeChange, DestinationAttributesChanged};
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use serde_json::Value;

use crate::{
    rules::{
        self, ChangeKind, DestinationDraft, StoredAttribute, SyncEntity, TaxRateLookup,
        WorkspaceRules,
    },
    store::{self, Changed, Deactivation},
};

/// The producer named in qbo-sync's envelopes.
pub const PRODUCER: &str = "qbo-sync";

/// What applying a batch of entities did.
#[derive(Debug, Default)]
pub struct Applied {
    /// The change events to publish.
    pub changes: Vec<DestinationAttributeChange>,
    /// Entities that derived no attribute.
    pub skipped: u32,
}

/// Derives `entities` (QBO objects of type `entity`) for one workspace and writes them.
pub async fn apply_entities(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    workspace_rules: &WorkspaceRules,
    entity: SyncEntity,
    entities: &[Value],
    tax_rates: &(dyn TaxRateLookup + Sync),
) -> QueryResult<Applied> {
    let derived = derive_entities(workspace_rules, entity, entities, tax_rates);
    apply_derived(conn, workspace_id, entity, &derived).await
}

/// What a batch of entities derives to, before anything is written.
#[derive(Debug, Default)]
pub struct DerivedEntities {
    drafts: Vec<DestinationDraft>,
    /// (QBO id, attribute type) of slots the entities no longer fill.
    retired_ids: Vec<String>,
    retired_types: Vec<String>,
    skipped: u32,
}

impl DerivedEntities {
    /// Whether writing them would do nothing.
    pub fn is_empty(&self) -> bool {
        self.drafts.is_empty() && self.retired_ids.is_empty()
    }
}

/// Derives a batch of entities (pure: a pull derives its next page while it writes this one).
pub fn derive_entities(
    workspace_rules: &WorkspaceRules,
    entity: SyncEntity,
    entities: &[Value],
    tax_rates: &(dyn TaxRateLookup + Sync),
) -> DerivedEntities {
    let mut out = DerivedEntities {
        drafts: Vec::with_capacity(entities.len()),
        ..DerivedEntities::default()
    };
    for object in entities {
        let derived = rules::derive(entity.as_str(), object, workspace_rules, tax_rates);
        let retired = rules::retired_slots(entity, &derived);
        if !retired.is_empty()
            && let Some(id) = object_id(object)
        {
            for slot in retired {
                out.retired_ids.push(id.clone());
                out.retired_types
                    .push(slot.attribute_type.as_str().to_owned());
            }
        }
        match derived {
            rules::Derived::Attributes(mut d) => out.drafts.append(&mut d),
            rules::Derived::Skipped(reason) => {
                out.skipped += 1;
                metrics::counter!("qbo_sync_entities_skipped_total", "reason" => reason.as_str())
                    .increment(1);
            }
        }
    }
    out
}

/// Writes derived entities.
pub async fn apply_derived(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    entity: SyncEntity,
    derived: &DerivedEntities,
) -> QueryResult<Applied> {
    let mut written = store::upsert(conn, workspace_id, entity.as_str(), &derived.drafts).await?;
    if !derived.retired_ids.is_empty() {
        written.extend(
            store::deactivate(
                conn,
                workspace_id,
                entity.as_str(),
                Deactivation::Slots {
                    ids: &derived.retired_ids,
                    types: &derived.retired_types,
                },
            )
            .await?,
        );
    }
    Ok(Applied {
        changes: written.iter().filter_map(change_event).collect(),
        skipped: derived.skipped,
    })
}

/// Deactivates every row of these QBO ids (deleted or merged away in QBO).
pub async fn deactivate_ids(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
    entity: SyncEntity,
    ids: &[String],
) -> QueryResult<Vec<DestinationAttributeChange>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let written =
        store::deactivate(conn, workspace_id, entity.as_str(), Deactivation::Ids(ids)).await?;
    Ok(written.iter().filter_map(change_event).collect())
}

/// The event for a written row, or `None` when nothing a user sees changed (a new SyncToken).
pub fn change_event(row: &Changed) -> Option<DestinationAttributeChange> {
    let previous = row.previous.old_hash.as_ref().map(|hash| StoredAttribute {
        value: row.previous.old_value.clone().unwrap_or_default(),
        code: row.previous.old_code.clone(),
        active: row.previous.old_active.unwrap_or(false),
        content_hash: hash.clone(),
    });
    let next = StoredAttribute {
        value: row.value.clone(),
        code: row.code.clone(),
        active: row.active,
        content_hash: row.content_hash.clone(),
    };
    let kind = rules::classify_change(previous.as_ref(), &next)?;
    let (proto_kind, old_value, old_code) = match kind {
        ChangeKind::Created => (v1::ChangeKind::Created, None, None),
        ChangeKind::Updated => (v1::ChangeKind::Updated, None, None),
        ChangeKind::Deactivated => (v1::ChangeKind::Deactivated, None, None),
        ChangeKind::Reactivated => (v1::ChangeKind::Reactivated, None, None),
        ChangeKind::Renamed {
            old_value,
            old_code,
        } => (v1::ChangeKind::Renamed, Some(old_value), old_code),
    };
    Some(DestinationAttributeChange {
        attribute_type: row.attribute_type.clone(),
        destination_id: row.destination_id.clone(),
        value: row.value.clone(),
        old_value,
        active: row.active,
        kind: proto_kind as i32,
        display_name: row.display_name.clone(),
        code: row.code.clone(),
        old_code,
        detail_json: if row.detail.is_null() {
            String::new()
        } else {
            row.detail.to_string()
        },
    })
}

/// Publishes `changes` of `workspace_id` through the outbox, in the caller's transaction.
/// Returns how many messages were enqueued.
pub async fn publish(
    conn: &mut AsyncPgConnection,
    kafka: &KafkaConfig,
    workspace_id: i64,
    origin: &str,
    changes: Vec<DestinationAttributeChange>,
) -> QueryResult<usize> {
    if changes.is_empty() {
        return Ok(0);
    }
    let topic = kafka.topic(topics::DESTINATION_ATTRIBUTES_CHANGED.name());
    let rows: Vec<_> = chunk_by_encoded_len(changes, MAX_CHANGE_EVENT_BYTES)
        .into_iter()
        .map(|chunk| {
            let payload = DestinationAttributesChanged {
                changes: chunk,
                origin: origin.to_owned(),
            };
            let envelope = envelope::new(
                workspace_id,
                PRODUCER,
                attrsync_proto::time::now(),
                payload.into_payload(),
            );
            envelope::outbox_row(topic.clone(), &envelope)
        })
        .collect();
    outbox::enqueue(conn, &rows).await?;
    Ok(rows.len())
}

/// A QBO object's `Id` as text.
pub fn object_id(object: &Value) -> Option<String> {
    match object.get("Id")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}
