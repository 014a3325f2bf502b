//! One QBO company (realm): its entity tables and the write rules.
//!
//! - Create: `Id` assigned per entity type, `SyncToken "0"`, `MetaData` stamped, defaults filled.
//! - Update: `Id` + `SyncToken` required; a token that is not the current one is a 5010 Stale
//!   Object Error; `sparse: true` merges the given properties, otherwise the object is replaced
//!   (read-only properties kept). `SyncToken` increments and `LastUpdatedTime` moves to now.
//! - Names: customers, vendors and employees share one `DisplayName` namespace; other types are
//!   unique by `FullyQualifiedName`; only active objects take part; a clash is a 6240.
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
    /// 6240 with the clashing name.
    Duplicate(String),
    /// 610 with the id.
    NotFound(String),
    /// 2020 with the missing property.
    Required(&'static str),
    /// 6000 with a detail.
    Invalid(String),
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

    /// Merges `from` into `into` (sandbox admin: "someone merged two vendors in QBO"): `from`
    /// becomes inactive (`" (deleted)"`), both get a new `SyncToken` and `LastUpdatedTime`, and one
    /// `Merge` event names `into` with `deletedId = from`. QBO merges only name-list entities of
    /// the same type (Customer, Vendor, Account, Item, Employee — reference §3.8).
    pub fn merge(
        &mut self,
        et: EntityType,
        from: u64,
        into: u64,
        now: i64,
    ) -> Result<(Value, QboEvent), WriteError> {
        if !matches!(
            et,
            EntityType::Customer
                | EntityType::Vendor
                | EntityType::Account
                | EntityType::Item
                | EntityType::Employee
        ) {
            return Err(WriteError::Invalid(format!(
                "{} objects cannot be merged",
                et.name()
            )));
        }
        if from == into {
            return Err(WriteError::Invalid(
                "an object cannot be merged into itself".into(),
            ));
        }
        for id in [from, into] {
            if !self.table(et).get(id).is_some_and(|e| e.active) {
                return Err(WriteError::NotFound(id.to_string()));
            }
        }
        let mut inactive = Map::new();
        inactive.insert("Active".into(), Value::Bool(false));
        self.patch(et, from, &inactive, now)?;
        let (out, _) = self.patch(et, into, &Map::new(), now)?;
        let mut event = self.event(et, into, EventKind::Merge, now);
        event.deleted_id = Some(from);
        Ok((out, event))
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
                return Err(WriteError::Duplicate(base));
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

    /// Recomputes `FullyQualifiedName` of the descendants of `parent`.
    fn refresh_children(&mut self, et: EntityType, parent: u64) {
        let Some(pf) = self
            .table(et)
            .get(parent)
            .and_then(|p| text(&p.json, "FullyQualifiedName"))
            .map(str::to_owned)
        else {
            return;
        };
        let pid = parent.to_string();
        let children: Vec<u64> = self
            .table(et)
            .iter()
            .filter(|c| {
                c.json
                    .get("ParentRef")
                    .and_then(|p| p.get("value"))
                    .and_then(Value::as_str)
                    == Some(pid.as_str())
            })
            .map(|c| c.id)
            .collect();
        for cid in children {
            let Some(mut child) = self.table(et).get(cid).cloned() else {
                continue;
            };
            let own = text(&child.json, et.name_field())
                .unwrap_or_default()
                .to_owned();
            child.json.insert(
                "FullyQualifiedName".into(),
                Value::from(format!("{pf}:{own}")),
            );
            self.store(et, child);
            self.refresh_children(et, cid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn create_then_sparse_update_with_sync_token() {
        let mut r = Realm::new("1", -420);
        let (c, ev) = r
            .create(
                EntityType::Customer,
                &obj(json!({"DisplayName": "Blue Harbor"})),
                1000,
            )
            .expect("create");
        assert_eq!(ev.kind, EventKind::Create);
        assert_eq!(c["SyncToken"], "0");
        assert_eq!(c["FullyQualifiedName"], "Blue Harbor");
        let id = c["Id"].as_str().expect("id").to_owned();
        let stale = r.update(
            EntityType::Customer,
            &obj(json!({"Id": id, "SyncToken": "7", "sparse": true, "Active": false})),
            2000,
        );
        assert_eq!(stale.err(), Some(WriteError::Stale));
        let (d, ev) = r
            .update(
                EntityType::Customer,
                &obj(json!({"Id": id, "SyncToken": "0", "sparse": true, "Active": false})),
                2000,
            )
            .expect("deactivate");
        assert_eq!(ev.kind, EventKind::Deactivate);
        assert_eq!(d["DisplayName"], "Blue Harbor (deleted)");
        assert_eq!(d["SyncToken"], "1");
        assert_eq!(d["MetaData"]["CreateTime"], format_time(1000, r.tz));
        // the name is free again for an active customer
        r.create(
            EntityType::Customer,
            &obj(json!({"DisplayName": "Blue Harbor"})),
            3000,
        )
        .expect("name reusable");
    }

    #[test]
    fn parties_share_a_namespace() {
        let mut r = Realm::new("1", 0);
        r.create(
            EntityType::Vendor,
            &obj(json!({"DisplayName": "Books by Bessie"})),
            1,
        )
        .expect("vendor");
        let dup = r.create(
            EntityType::Customer,
            &obj(json!({"DisplayName": "books by bessie"})),
            2,
        );
        assert_eq!(
            dup.err(),
            Some(WriteError::Duplicate("books by bessie".into()))
        );
        r.create(
            EntityType::Account,
            &obj(json!({"Name": "Books by Bessie"})),
            3,
        )
        .expect("accounts are separate");
    }

    #[test]
    fn children_are_qualified_and_follow_parent_renames() {
        let mut r = Realm::new("1", 0);
        let (p, _) = r
            .create(
                EntityType::Customer,
                &obj(json!({"DisplayName": "Freeman"})),
                1,
            )
            .expect("parent");
        let pid = p["Id"].as_str().expect("id").to_owned();
        let (c, _) = r
            .create(
                EntityType::Customer,
                &obj(json!({"DisplayName": "Ocean View", "ParentRef": {"value": pid}})),
                2,
            )
            .expect("child");
        assert_eq!(c["FullyQualifiedName"], "Freeman:Ocean View");
        assert_eq!(c["Job"], true);
        assert_eq!(c["Level"], 1);
        r.patch(
            EntityType::Customer,
            pid.parse().expect("numeric"),
            &obj(json!({"DisplayName": "Freeman Sports"})),
            3,
        )
        .expect("rename");
        let cid: u64 = c["Id"].as_str().expect("id").parse().expect("numeric");
        assert_eq!(
            r.table(EntityType::Customer).get(cid).expect("child").json["FullyQualifiedName"],
            "Freeman Sports:Ocean View"
        );
    }

    #[test]
    fn missing_name_is_required_param() {
        let mut r = Realm::new("1", 0);
        assert_eq!(
            r.create(EntityType::Class, &obj(json!({})), 1).err(),
            Some(WriteError::Required("Name"))
        );
    }
}
