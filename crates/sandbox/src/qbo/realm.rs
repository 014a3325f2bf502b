//! One QBO company (realm): its entity tables and the write rules.
//!
//! - Create: `Id` assigned per entity type, `SyncToken "0"`, `MetaData` stamped, defaults filled.
//! - Update: `Id` + `SyncToken` required; a token that is not the current one is a 5010 Stale
//!   Object Error; `sparse: true` merges the given properties, otherwise the object is replaced
//!   (read-only properties kept). `SyncToken` increments and `LastUpdatedTime` moves to now.
//! - Names: customers, vendors and employees share one `DisplayName` namespace (a Vendor may not
//!   take a Customer's or an Employee's name — QBO's rule as its 6240 message states it; that it
//!   spans all three lists is **(inferred)**); other types are unique by `FullyQualifiedName`; only
//!   active objects take part; a clash is a 6240. Client bodies are checked first by
//!   [`super::write_rules`] (unknown properties, required ones, `:` in names).
//! - Deactivation appends `" (deleted)"` to the name, `DisplayName` and `FullyQualifiedName`;
//!   reactivation strips it. `FullyQualifiedName` of a child is `Parent:Child`, recomputed for
//!   descendants when a parent's name changes (their `SyncToken` is left alone **(inferred)**).
//! - Hard delete (sandbox admin only; name lists are never deleted through the API) leaves a
//!   tombstone reported by CDC with `status: "Deleted"`.

use std::collections::HashMap;

use chrono::FixedOffset;

use crate::config::QboCompany;
use serde_json::{Map, Value, json};

use super::{
    entity::{EntityType, Namespace},
    store::{Entity, Table, format_time, parse_time, tz},
};

mod hierarchy;
mod merge;

/// Suffix QBO appends to inactive names.
pub const DELETED_SUFFIX: &str = " (deleted)";

/// What happened to an entity (mapped to webhook operations by the webhook builder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Created.
    Create,
    /// Updated (including renames and reactivation).
    Update,
    /// Made inactive.
    Deactivate,
    /// Hard-deleted.
    Delete,
    /// Another entity was merged into this one (the other one is `QboEvent::deleted_id`).
    Merge,
}

/// A change to report through webhooks.
#[derive(Debug, Clone)]
pub struct QboEvent {
    /// Realm.
    pub realm: String,
    /// Entity type.
    pub entity: EntityType,
    /// Entity id.
    pub id: u64,
    /// What happened.
    pub kind: EventKind,
    /// When, epoch seconds.
    pub at: i64,
    /// The company time zone (webhooks render `lastUpdated` in it).
    pub tz: FixedOffset,
    /// For [`EventKind::Merge`]: the id merged away.
    pub deleted_id: Option<u64>,
}

/// A refused write (maps to a Fault).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// 5010.
    Stale,
    /// 6240 with the entity type written and the clashing name.
    Duplicate(EntityType, String),
    /// 610 with the id.
    NotFound(String),
    /// 2020 with the missing property.
    Required(&'static str),
    /// 6000 with a detail.
    Invalid(String),
    /// 2010: a property the entity does not have.
    Unsupported(String),
}

/// A hard-deleted entity, for CDC.
#[derive(Debug, Clone)]
pub struct Tombstone {
    /// Type.
    pub entity: EntityType,
    /// Id.
    pub id: u64,
    /// When, epoch seconds.
    pub at: i64,
}

/// One company.
#[derive(Debug)]
pub struct Realm {
    /// Realm id.
    pub id: String,
    /// Company settings (`CompanyInfo`, `Preferences`).
    pub company: QboCompany,
    /// Company time zone.
    pub tz: FixedOffset,
    tables: Vec<Table>,
    names: HashMap<(Namespace, String), (EntityType, u64)>,
    /// Hard deletes, oldest first.
    pub tombstones: Vec<Tombstone>,
}

fn text<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

fn strip_suffix(s: &str) -> &str {
    s.strip_suffix(DELETED_SUFFIX).unwrap_or(s)
}

/// Keys a client can never set.
const READ_ONLY: [&str; 6] = [
    "Id",
    "SyncToken",
    "MetaData",
    "domain",
    "sparse",
    "FullyQualifiedName",
];

impl Realm {
    /// An empty company.
    pub fn new(id: &str, tz_offset_minutes: i32) -> Self {
        Self {
            id: id.to_owned(),
            company: QboCompany::default(),
            tz: tz(tz_offset_minutes),
            tables: EntityType::ALL.iter().map(|_| Table::default()).collect(),
            names: HashMap::new(),
            tombstones: Vec::new(),
        }
    }

    /// An event of this realm.
    pub fn event(&self, entity: EntityType, id: u64, kind: EventKind, at: i64) -> QboEvent {
        QboEvent {
            realm: self.id.clone(),
            entity,
            id,
            kind,
            at,
            tz: self.tz,
            deleted_id: None,
        }
    }

    /// A table.
    pub fn table(&self, e: EntityType) -> &Table {
        &self.tables[e.index()]
    }

    fn table_mut(&mut self, e: EntityType) -> &mut Table {
        &mut self.tables[e.index()]
    }

    fn name_key(et: EntityType, json: &Map<String, Value>) -> (Namespace, String) {
        let name = match et.namespace() {
            Namespace::Party => text(json, "DisplayName"),
            Namespace::Own(_) => text(json, "FullyQualifiedName").or_else(|| text(json, "Name")),
        };
        (et.namespace(), name.unwrap_or_default().to_lowercase())
    }

    fn index_name(&mut self, et: EntityType, e: &Entity) {
        if e.active {
            self.names.insert(Self::name_key(et, &e.json), (et, e.id));
        }
    }

    /// Stores a fully formed entity as given (fixtures and the generator).
    pub fn load(&mut self, et: EntityType, json: Map<String, Value>) {
        let Some(id) = text(&json, "Id").and_then(|s| s.parse::<u64>().ok()) else {
            return;
        };
        let active = json.get("Active").and_then(Value::as_bool).unwrap_or(true);
        let meta = |k: &str| {
            json.get("MetaData")
                .and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .and_then(|s| parse_time(s, self.tz))
        };
        let updated = meta("LastUpdatedTime").unwrap_or(0);
        let created = meta("CreateTime").unwrap_or(updated);
        self.store(
            et,
            Entity {
                id,
                active,
                updated,
                created,
                json,
            },
        );
    }

    /// Puts an entity and keeps the name index in step.
    fn store(&mut self, et: EntityType, e: Entity) {
        if let Some(old) = self.table(et).get(e.id) {
            let (active, key) = (old.active, Self::name_key(et, &old.json));
            if active && self.names.get(&key) == Some(&(et, e.id)) {
                self.names.remove(&key);
            }
        }
        self.index_name(et, &e);
        self.table_mut(et).put(e);
    }

    /// Creates an entity from a client body.
    pub fn create(
        &mut self,
        et: EntityType,
        input: &Map<String, Value>,
        now: i64,
    ) -> Result<(Value, QboEvent), WriteError> {
        self.create_as(et, None, input, now)
    }

    /// Creates an entity with a chosen `Id` (sandbox admin) or the next free one.
    pub fn create_as(
        &mut self,
        et: EntityType,
        id: Option<u64>,
        input: &Map<String, Value>,
        now: i64,
    ) -> Result<(Value, QboEvent), WriteError> {
        if let Some(id) = id
            && self.table(et).get(id).is_some()
        {
            return Err(WriteError::Invalid(format!(
                "{} {id} already exists",
                et.name()
            )));
        }
        let mut json = et.defaults();
        for (k, v) in input {
            if !READ_ONLY.contains(&k.as_str()) {
                json.insert(k.clone(), v.clone());
            }
        }
        let id = id.unwrap_or(self.table(et).next_id);
        json.insert("Id".into(), Value::from(id.to_string()));
        json.insert("SyncToken".into(), Value::from("0"));
        self.commit(et, id, json, None, now)
    }

    /// Updates an entity from a client body (`Id`, `SyncToken`, optional `sparse`).
    pub fn update(
        &mut self,
        et: EntityType,
        input: &Map<String, Value>,
        now: i64,
    ) -> Result<(Value, QboEvent), WriteError> {
        let id_text = text(input, "Id").ok_or(WriteError::Required("Id"))?;
        let id: u64 = id_text
            .parse()
            .map_err(|_| WriteError::NotFound(id_text.to_owned()))?;
        let current = self
            .table(et)
            .get(id)
            .ok_or_else(|| WriteError::NotFound(id_text.to_owned()))?;
        let token = input
            .get("SyncToken")
            .and_then(Value::as_str)
            .ok_or(WriteError::Required("SyncToken"))?;
        if current.json.get("SyncToken").and_then(Value::as_str) != Some(token) {
            return Err(WriteError::Stale);
        }
        let sparse = input
            .get("sparse")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut json = if sparse {
            current.json.clone()
        } else {
            let mut base = et.defaults();
            for k in READ_ONLY {
                if let Some(v) = current.json.get(k) {
                    base.insert(k.to_owned(), v.clone());
                }
            }
            base
        };
        for (k, v) in input {
            if !READ_ONLY.contains(&k.as_str()) {
                json.insert(k.clone(), v.clone());
            }
        }
        self.bump_and_commit(et, id, json, now)
    }

    /// Applies a patch without a `SyncToken` check (sandbox admin: "someone edited it in QBO").
    pub fn patch(
        &mut self,
        et: EntityType,
        id: u64,
        patch: &Map<String, Value>,
        now: i64,
    ) -> Result<(Value, QboEvent), WriteError> {
        let current = self
            .table(et)
            .get(id)
            .ok_or_else(|| WriteError::NotFound(id.to_string()))?;
        let mut json = current.json.clone();
        for (k, v) in patch {
            if !READ_ONLY.contains(&k.as_str()) {
                json.insert(k.clone(), v.clone());
            }
        }
        self.bump_and_commit(et, id, json, now)
    }

    fn bump_and_commit(
        &mut self,
        et: EntityType,
        id: u64,
        mut json: Map<String, Value>,
        now: i64,
    ) -> Result<(Value, QboEvent), WriteError> {
        let current = self
            .table(et)
            .get(id)
            .ok_or_else(|| WriteError::NotFound(id.to_string()))?;
        let token: u64 = current
            .json
            .get("SyncToken")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        json.insert("SyncToken".into(), Value::from((token + 1).to_string()));
        let previous = Some((current.active, current.created));
        self.commit(et, id, json, previous, now)
    }

    /// Hard-deletes an entity (sandbox admin only).
    pub fn delete(&mut self, et: EntityType, id: u64, now: i64) -> Result<QboEvent, WriteError> {
        let old = self
            .table_mut(et)
            .remove(id)
            .ok_or_else(|| WriteError::NotFound(id.to_string()))?;
        let key = Self::name_key(et, &old.json);
        if self.names.get(&key) == Some(&(et, id)) {
            self.names.remove(&key);
        }
        self.tombstones.push(Tombstone {
            entity: et,
            id,
            at: now,
        });
        Ok(self.event(et, id, EventKind::Delete, now))
    }

    /// Derives names and flags, checks uniqueness, stamps and stores.
    fn commit(
        &mut self,
        et: EntityType,
        id: u64,
        mut json: Map<String, Value>,
        previous: Option<(bool, i64)>,
        now: i64,
    ) -> Result<(Value, QboEvent), WriteError> {
        let active = json.get("Active").and_then(Value::as_bool).unwrap_or(true);
        json.insert("Active".into(), Value::Bool(active));
        let name_field = et.name_field();
        if matches!(et.namespace(), Namespace::Party) && text(&json, "DisplayName").is_none() {
            let given = [text(&json, "GivenName"), text(&json, "FamilyName")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            let derived = text(&json, "CompanyName")
                .map(str::to_owned)
                .or((!given.is_empty()).then_some(given));
            if let Some(d) = derived {
                json.insert("DisplayName".into(), Value::from(d));
            }
        }
        let base = strip_suffix(text(&json, name_field).ok_or(WriteError::Required(name_field))?)
            .to_owned();
        let name = if active {
            base.clone()
        } else {
            format!("{base}{DELETED_SUFFIX}")
        };
        json.insert(name_field.into(), Value::from(name.clone()));
        if et == EntityType::Account && !json.contains_key("Classification") {
            let c = super::entity::account_classification(
                text(&json, "AccountType").unwrap_or("Expense"),
            );
            json.insert("Classification".into(), Value::from(c));
        }
        if matches!(et.namespace(), Namespace::Party) && !json.contains_key("PrintOnCheckName") {
            json.insert("PrintOnCheckName".into(), Value::from(base.clone()));
        }
        let fqn = if et.hierarchical() {
            let parent = json
                .get("ParentRef")
                .and_then(|p| p.get("value"))
                .and_then(Value::as_str);
            match parent {
                Some(pid) => {
                    let p = pid
                        .parse::<u64>()
                        .ok()
                        .and_then(|p| self.table(et).get(p))
                        .ok_or_else(|| {
                            WriteError::Invalid(format!(
                                "Invalid Reference Id : ParentRef {pid} does not exist"
                            ))
                        })?;
                    if p.id == id {
                        return Err(WriteError::Invalid(
                            "an object cannot be its own parent".into(),
                        ));
                    }
                    let pf = text(&p.json, "FullyQualifiedName")
                        .unwrap_or_default()
                        .to_owned();
                    let level = p.json.get("Level").and_then(Value::as_u64).unwrap_or(0) + 1;
                    if matches!(et, EntityType::Customer | EntityType::Item) {
                        json.insert("Level".into(), Value::from(level));
                    }
                    if let Some(flag) = et.sub_flag() {
                        json.insert(flag.into(), Value::Bool(true));
                    }
                    format!("{pf}:{name}")
                }
                None => {
                    if let Some(flag) = et.sub_flag() {
                        json.insert(flag.into(), Value::Bool(false));
                    }
                    name.clone()
                }
            }
        } else {
            name.clone()
        };
        if et.hierarchical() {
            json.insert("FullyQualifiedName".into(), Value::from(fqn));
        }
        if active {
            let key = Self::name_key(et, &json);
            if let Some(holder) = self.names.get(&key)
                && *holder != (et, id)
            {
                return Err(WriteError::Duplicate(et, base));
            }
        }
        let created = previous.map_or(now, |p| p.1);
        json.insert(
            "MetaData".into(),
            json!({"CreateTime": format_time(created, self.tz), "LastUpdatedTime": format_time(now, self.tz)}),
        );
        let name_changed = self.table(et).get(id).is_some_and(|old| {
            old.json.get("FullyQualifiedName") != json.get("FullyQualifiedName")
        });
        let e = Entity {
            id,
            active,
            updated: now,
            created,
            json,
        };
        let data = Value::Object(e.json.clone());
        self.store(et, e);
        if name_changed && et.hierarchical() {
            self.refresh_children(et, id);
        }
        let kind = match previous {
            None => EventKind::Create,
            Some((true, _)) if !active => EventKind::Deactivate,
            Some(_) => EventKind::Update,
        };
        Ok((data, self.event(et, id, kind, now)))
    }
}

#[cfg(test)]
mod tests;
