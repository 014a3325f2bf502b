//! One simulated Fyle org: its collections and the write rules (create/update by `id`, bulk with
//! all-or-nothing semantics, deletes), each returning the [`Change`]s that drive webhooks.
//!
//! Every write stamps `updated_at` with the clock, rounded to the configured resolution
//! ([`FyleMess`]) and never earlier than the org's previous stamp, so `updated_at=gte.<last seen>`
//! always returns a row that changed after it was last read — but stamps may **tie**: every row of
//! one bulk post shares one stamp (one transaction, one `now()`; configurable), and with
//! whole-second resolution unrelated writes in the same second tie too. Watermarks must therefore
//! be inclusive (`gte`) and pages ordered by `updated_at,id`. Bulk writes are atomic: any row
//! error rolls back the rows already applied and reports a `BulkError` (or the first
//! `IntegrityError`), and no webhook fires.

use serde_json::{Map, Value, json};

use super::{
    super::config::{FyleMess, TimestampResolution},
    list_filter::{format_micros, parse_instant},
    list_query::{ListQuery, parse_list_query},
    resources::{FieldErrors, Mode, Resource, build},
    store::{Collection, Row, RowId},
};

/// Kind of change, as named in Fyle webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `CREATED`
    Created,
    /// `UPDATED`
    Updated,
    /// `DELETED`
    Deleted,
}

impl Action {
    /// Webhook spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "CREATED",
            Action::Updated => "UPDATED",
            Action::Deleted => "DELETED",
        }
    }
}

/// A change to report through webhooks.
#[derive(Debug, Clone)]
pub struct Change {
    /// Org.
    pub org_id: String,
    /// Resource.
    pub resource: Resource,
    /// What happened.
    pub action: Action,
    /// The full list-item object (`{id, org_id, name}` for deletes).
    pub data: Value,
}

/// One row of a `BulkError`.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkRowError {
    /// Identifying value of the row (name or id).
    pub key: Value,
    /// What is wrong.
    pub message: String,
    /// Index in the posted array.
    pub row: usize,
}

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteError {
    /// Invalid input (400 `ValidationError`).
    Validation(FieldErrors),
    /// `id` names no object (404).
    NotFound,
    /// Uniqueness violated (400 `IntegrityError`).
    Integrity(String),
    /// Per-row errors of a bulk post (400 `BulkError`).
    Bulk(Vec<BulkRowError>),
}

/// Identity of the org and its admin, as `my_profile` reports it.
#[derive(Debug, Clone)]
pub struct OrgProfile {
    /// `or…` id.
    pub org_id: String,
    /// Org name.
    pub name: String,
    /// Currency.
    pub currency: String,
    /// Email domain.
    pub domain: String,
    /// Admin user `{id, email, full_name}`.
    pub admin: Value,
}

/// A Fyle org and its data.
#[derive(Debug)]
pub struct FyleOrg {
    /// Identity.
    pub profile: OrgProfile,
    collections: Vec<Collection>,
    next_int_id: i64,
    next_str_id: u64,
    next_text_column: u32,
    last_stamp_us: i64,
    /// Timestamp and list-order mess.
    pub mess: FyleMess,
    /// The org's record in Fyle's integration-settings service ([`super::integration`]).
    pub integration: Option<super::integration::Integration>,
}

fn key_of(resource: Resource, item: &Value) -> Value {
    item.get(resource.name_key())
        .filter(|v| !v.is_null())
        .or_else(|| item.get("id"))
        .cloned()
        .unwrap_or(Value::Null)
}

fn first_message(errors: &FieldErrors) -> String {
    errors
        .iter()
        .next()
        .map(|(k, v)| {
            let msg = v.get(0).and_then(Value::as_str).unwrap_or("invalid");
            format!("{k}: {msg}")
        })
        .unwrap_or_else(|| "invalid row".to_owned())
}

impl FyleOrg {
    /// An empty org.
    pub fn new(profile: OrgProfile) -> Self {
        Self {
            profile,
            collections: Resource::ALL
                .iter()
                .map(|r| Collection::new(r.unique_key()))
                .collect(),
            next_int_id: 1_000_000,
            next_str_id: 1,
            next_text_column: 1,
            last_stamp_us: 0,
            mess: FyleMess::default(),
            integration: Some(super::integration::Integration::qbo()),
        }
    }

    /// Org id.
    pub fn id(&self) -> &str {
        &self.profile.org_id
    }

    /// A collection.
    pub fn collection(&self, r: Resource) -> &Collection {
        &self.collections[r.index()]
    }

    fn collection_mut(&mut self, r: Resource) -> &mut Collection {
        &mut self.collections[r.index()]
    }

    /// An `updated_at` for a write at `now_us`: rounded down to the configured resolution and
    /// never earlier than the previous stamp (equal is possible).
    pub fn stamp(&mut self, now_us: i64) -> i64 {
        let now = match self.mess.updated_at_resolution {
            TimestampResolution::Micros => now_us,
            TimestampResolution::Seconds => now_us - now_us.rem_euclid(1_000_000),
        };
        self.last_stamp_us = now.max(self.last_stamp_us);
        self.last_stamp_us
    }

    /// A stamp strictly after the previous one (bulk rows without a shared stamp).
    fn stamp_after(&mut self, now_us: i64) -> i64 {
        let s = self.stamp(now_us).max(self.last_stamp_us + 1);
        self.last_stamp_us = s;
        s
    }

    fn new_id(&mut self, r: Resource) -> RowId {
        match r.string_id_prefix() {
            Some(prefix) => {
                let n = self.next_str_id;
                self.next_str_id += 1;
                RowId::Str(format!("{prefix}sb{n:08}"))
            }
            None => {
                let n = self.next_int_id;
                self.next_int_id += 1;
                RowId::Int(n)
            }
        }
    }

    /// Inserts a fully formed row as given (fixtures and the generator); keeps id counters ahead.
    pub fn load(&mut self, r: Resource, json: Map<String, Value>) {
        let Some(id) = json.get("id").and_then(RowId::of) else {
            return;
        };
        let updated_us = json
            .get("updated_at")
            .and_then(Value::as_str)
            .and_then(parse_instant)
            .unwrap_or(0);
        if let RowId::Int(i) = id {
            self.next_int_id = self.next_int_id.max(i + 1);
        }
        if r == Resource::ExpenseFields
            && let Some(n) = json
                .get("column_name")
                .and_then(Value::as_str)
                .and_then(|c| c.strip_prefix("text_column"))
                .and_then(|n| n.parse::<u32>().ok())
        {
            self.next_text_column = self.next_text_column.max(n + 1);
        }
        self.last_stamp_us = self.last_stamp_us.max(updated_us);
        self.collection_mut(r).put(Row {
            id,
            seq: 0,
            updated_us,
            json,
        });
    }

    /// Serves a list page as the response body bytes.
    pub fn list(&self, r: Resource, pairs: &[(String, String)]) -> Result<Vec<u8>, String> {
        let mut q = parse_list_query(pairs, r.default_limit())?;
        q.implicit_id_tiebreak = self.mess.implicit_id_tiebreak;
        if r == Resource::DependentValues {
            for required in ["expense_field_id", "parent_expense_field_id"] {
                if !q.filters.iter().any(|f| f.column.is(required)) {
                    return Err(format!("{required} is a required query parameter"));
                }
            }
            if !q.filters.iter().any(|f| f.column.is("is_enabled")) {
                let extra = parse_list_query(&[("is_enabled".into(), "eq.true".into())], 1)?;
                q.filters.extend(extra.filters);
            }
        }
        let coll = self.collection(r);
        Self::check_columns(r, coll, &q)?;
        envelope(coll, &q)
    }

    fn check_columns(r: Resource, coll: &Collection, q: &ListQuery) -> Result<(), String> {
        let sample = coll.iter().next();
        for col in q
            .filters
            .iter()
            .map(|f| &f.column)
            .chain(q.order.iter().map(|o| &o.column))
        {
            let root = col.root();
            let known = r.known_column(root) || sample.is_some_and(|s| s.json.contains_key(root));
            if !known {
                return Err(format!("column {}.{root} does not exist", r.path()));
            }
        }
        Ok(())
    }

    /// The read-only merchants view (`GET /admin/merchants`), derived from the merchant field.
    pub fn list_merchants(&self, pairs: &[(String, String)]) -> Result<Vec<u8>, String> {
        let mut q = parse_list_query(pairs, 50)?;
        q.implicit_id_tiebreak = self.mess.implicit_id_tiebreak;
        let mut coll = Collection::new(None);
        if let Some(field) = self.merchant_field() {
            let updated = field.json.get("updated_at").cloned().unwrap_or(Value::Null);
            let created = field.json.get("created_at").cloned().unwrap_or(Value::Null);
            let options = field
                .json
                .get("options")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (i, name) in options.into_iter().enumerate() {
                let id = i64::try_from(i).unwrap_or(i64::MAX) + 1;
                let json = json!({"id": id, "display_name": name, "created_at": created, "updated_at": updated});
                coll.put(Row {
                    id: RowId::Int(id),
                    seq: 0,
                    updated_us: field.updated_us,
                    json: json.as_object().cloned().unwrap_or_default(),
                });
            }
        }
        envelope(&coll, &q)
    }

    /// The system expense field whose `column_name` is `merchant`.
    pub fn merchant_field(&self) -> Option<&Row> {
        self.collection(Resource::ExpenseFields)
            .iter()
            .find(|r| r.json.get("column_name").and_then(Value::as_str) == Some("merchant"))
    }

    /// Creates (no `id`) or updates (`id`) one object.
    pub fn upsert(
        &mut self,
        r: Resource,
        input: &Map<String, Value>,
        now_us: i64,
        mode: Mode,
    ) -> Result<(Value, Change), WriteError> {
        let (_, change) = self.upsert_inner(r, input, Stamp::Now(now_us), mode)?;
        Ok((change.data.clone(), change))
    }

    /// Returns the previous row (for rollback) and the change.
    fn upsert_inner(
        &mut self,
        r: Resource,
        input: &Map<String, Value>,
        stamp: Stamp,
        mode: Mode,
    ) -> Result<(Option<Row>, Change), WriteError> {
        let id = match input.get("id") {
            None | Some(Value::Null) => None,
            Some(v) => Some(RowId::of(v).ok_or(WriteError::NotFound)?),
        };
        let existing = match &id {
            Some(id) => Some(&self.collection(r).get(id).ok_or(WriteError::NotFound)?.json),
            None => None,
        };
        let mut out = build(r, existing, input, mode).map_err(WriteError::Validation)?;
        let coll = self.collection(r);
        if let Some(key) = coll.unique_key_of(&out)
            && let Some(holder) = coll.unique_holder(&key)
            && Some(holder) != id.as_ref()
        {
            return Err(WriteError::Integrity(
                r.integrity_values(&out, &self.profile.org_id),
            ));
        }
        let stamp = match stamp {
            Stamp::Now(now_us) => self.stamp(now_us),
            Stamp::After(now_us) => self.stamp_after(now_us),
            Stamp::Fixed(us) => us,
        };
        let created = id.is_none();
        let id = match id {
            Some(id) => id,
            None => self.new_id(r),
        };
        if created {
            out.insert("created_at".into(), Value::from(format_micros(stamp)));
            if r == Resource::ExpenseFields && out.get("column_name").is_none_or(Value::is_null) {
                out.insert(
                    "column_name".into(),
                    Value::from(format!("text_column{}", self.next_text_column)),
                );
                self.next_text_column += 1;
            }
        }
        out.insert("id".into(), id.to_json());
        out.insert("org_id".into(), Value::from(self.profile.org_id.clone()));
        out.insert("updated_at".into(), Value::from(format_micros(stamp)));
        let data = Value::Object(out.clone());
        let old = self.collection_mut(r).put(Row {
            id,
            seq: 0,
            updated_us: stamp,
            json: out,
        });
        let change = Change {
            org_id: self.profile.org_id.clone(),
            resource: r,
            action: if created {
                Action::Created
            } else {
                Action::Updated
            },
            data,
        };
        Ok((old, change))
    }

    /// Applies a bulk post atomically. `fault` injects a BulkError at a row.
    pub fn bulk(
        &mut self,
        r: Resource,
        items: &[Value],
        now_us: i64,
        mode: Mode,
        fault: Option<(usize, String)>,
    ) -> Result<Vec<Change>, WriteError> {
        if let Some((row, message)) = fault
            && let Some(item) = items.get(row)
        {
            return Err(WriteError::Bulk(vec![BulkRowError {
                key: key_of(r, item),
                message,
                row,
            }]));
        }
        let mut undo: Vec<(RowId, Option<Row>)> = Vec::new();
        let mut changes = Vec::new();
        let mut errors = Vec::new();
        let mut integrity = None;
        let shared = self.mess.bulk_shared_updated_at.then(|| self.stamp(now_us));
        for (row, item) in items.iter().enumerate() {
            let Some(obj) = item.as_object() else {
                errors.push(BulkRowError {
                    key: Value::Null,
                    message: "Not a valid object.".into(),
                    row,
                });
                continue;
            };
            let stamp = shared.map_or(Stamp::After(now_us), Stamp::Fixed);
            match self.upsert_inner(r, obj, stamp, mode) {
                Ok((old, change)) => {
                    if let Some(id) = change.data.get("id").and_then(RowId::of) {
                        undo.push((id, old));
                    }
                    changes.push(change);
                }
                Err(WriteError::Validation(e)) => {
                    errors.push(BulkRowError {
                        key: key_of(r, item),
                        message: first_message(&e),
                        row,
                    });
                }
                Err(WriteError::NotFound) => errors.push(BulkRowError {
                    key: key_of(r, item),
                    message: "Resource not found".into(),
                    row,
                }),
                Err(WriteError::Integrity(m)) => {
                    integrity = Some(m);
                    break;
                }
                Err(WriteError::Bulk(mut e)) => errors.append(&mut e),
            }
        }
        if integrity.is_none() && errors.is_empty() {
            return Ok(changes);
        }
        let coll = self.collection_mut(r);
        for (id, old) in undo.into_iter().rev() {
            coll.remove(&id);
            if let Some(old) = old {
                coll.put(old);
            }
        }
        Err(match integrity {
            Some(m) => WriteError::Integrity(m),
            None => WriteError::Bulk(errors),
        })
    }

    /// Hard-deletes one object.
    pub fn delete(&mut self, r: Resource, id: &RowId) -> Result<Change, WriteError> {
        let row = self
            .collection_mut(r)
            .remove(id)
            .ok_or(WriteError::NotFound)?;
        Ok(Change {
            org_id: self.profile.org_id.clone(),
            resource: r,
            action: Action::Deleted,
            data: super::webhooks::deleted_data(r, &row.json),
        })
    }
}

/// How a write picks its `updated_at`.
#[derive(Debug, Clone, Copy)]
enum Stamp {
    /// The clock (rounded, non-decreasing).
    Now(i64),
    /// Strictly after the previous stamp.
    After(i64),
    /// Given (the shared stamp of a bulk post).
    Fixed(i64),
}

#[derive(serde::Serialize)]
struct Envelope<'a> {
    count: usize,
    offset: usize,
    data: Vec<&'a Map<String, Value>>,
}

fn envelope(coll: &Collection, q: &ListQuery) -> Result<Vec<u8>, String> {
    let (count, rows) = coll.list(q)?;
    let env = Envelope {
        count,
        offset: q.offset,
        data: rows.iter().map(|r| &r.json).collect(),
    };
    serde_json::to_vec(&env).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
