//! Webhook coalescing: a batch of QBO entity changes → one [`FetchPlan`] per realm.
//!
//! QBO webhooks carry identifiers only (reference §3.8); the entity has to be read back. Read one
//! by one, a burst of 1,000 changes would cost 1,000 of the realm's 500 requests a minute. The
//! plan instead names, per entity type, the distinct ids to read with `… WHERE Id IN (…)` in as
//! few statements as [`ChunkLimits`] allows, so a burst costs a handful of requests.
//!
//! # Rules
//! - Entities synced from webhooks: `Account`, `Item`, `Vendor`, `Customer`, `Class`,
//!   `Department`, `Employee` (names compare case-insensitively). Everything else — `Bill`,
//!   `Invoice`, …, and `TaxCode`/`TaxRate`, which Intuit never sends — is counted in
//!   [`FetchPlan::ignored`] (and per name in [`FetchPlan::ignored_by_entity`]) and dropped. So is
//!   a change without an id.
//! - `Create`, `Update` (and `Void`, `Emailed` or an operation we do not know, which do not occur
//!   for name lists but cost nothing to honour) → **fetch** the id.
//! - `Delete` → **deactivate** the id directly, without a read: for name-list entities QBO's
//!   "delete" is a deactivation (reference §3.2), and the stored row needs nothing else.
//! - `Merge` → fetch the surviving id (`entity_id`); deactivate the merged-away id
//!   (`deleted_id`) and record the pair in [`EntityPlan::merges`] so the caller can keep the
//!   link. A merge without `deleted_id` (the CloudEvents format has none) is a fetch of the
//!   survivor only; the merged-away entity is then caught by the next reconcile.
//!
//! # Ordering semantics
//! **Fetch wins.** An id that any change in the batch asks to fetch is fetched, and not also
//! deactivated directly, whatever came first: a read returns the entity's state *now*, which
//! is the truth after every change in the batch (a `Delete` followed by an `Update` is an
//! active entity again; an `Update` followed by a `Delete` reads back inactive). The plan is
//! therefore the same for every order of the same batch — coalescing is order-independent, so
//! redelivered or interleaved webhooks cannot change its outcome. A direct deactivation
//! carries `as_of`, the newest `lastUpdated` of the changes behind it: the caller applies it
//! only if the stored row's `LastUpdatedTime` is not newer (a later batch may already have
//! read the entity back active).
//!
//! The caller should also deactivate an id it fetched but QBO did not return (it was
//! hard-deleted, which only CDC tombstones otherwise reveal).

use std::{
    cmp::Ordering,
    collections::{BTreeMap, BTreeSet},
};

use chrono::{DateTime, Utc};

use super::SyncEntity;

/// What happened to an entity, in QBO's legacy spelling (ingest normalises CloudEvents to it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Operation {
    Create,
    Update,
    /// For name-list entities: made inactive.
    Delete,
    /// Another entity (`deleted_id`) was merged into this one.
    Merge,
    Void,
    Emailed,
    /// An operation this code does not know, as spelled.
    Other(String),
}

impl Operation {
    /// From the legacy `operation` field, case-insensitively.
    pub fn from_legacy(s: &str) -> Self {
        const KNOWN: [(&str, Operation); 6] = [
            ("Create", Operation::Create),
            ("Update", Operation::Update),
            ("Delete", Operation::Delete),
            ("Merge", Operation::Merge),
            ("Void", Operation::Void),
            ("Emailed", Operation::Emailed),
        ];
        KNOWN
            .into_iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s.trim()))
            .map_or_else(|| Self::Other(s.to_owned()), |(_, op)| op)
    }
}

/// One entity change, as `qbo.entity-changes.v1` carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityChange {
    pub realm_id: String,
    /// QBO's entity name (`Customer`, `Bill`, …).
    pub entity: String,
    pub entity_id: String,
    pub operation: Operation,
    /// For `Merge`: the id merged away.
    pub deleted_id: Option<String>,
    pub last_updated: Option<DateTime<Utc>>,
}

/// How many ids one `IN (…)` statement may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// At most this many ids (default 1,000 = QBO's `MAXRESULTS` ceiling, so one page answers
    /// one statement).
    pub max_ids: usize,
    /// At most this many characters of the rendered list `'1','2',…` (default 2,000: after
    /// percent-encoding, where `'` and `,` take three characters each, the query string stays
    /// under ~6 KB, inside the 8 KB URL limit common to HTTP front ends). An id longer than this
    /// on its own still gets a statement of its own.
    pub max_list_chars: usize,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        Self {
            max_ids: 1000,
            max_list_chars: 2000,
        }
    }
}

/// What to do for one realm after a batch of changes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchPlan {
    pub realm_id: String,
    /// Only entity types with something to do.
    pub entities: BTreeMap<SyncEntity, EntityPlan>,
    /// Changes dropped: entities we do not sync from webhooks, or without an id.
    pub ignored: u64,
    /// [`Self::ignored`] by entity name as QBO spelled it.
    pub ignored_by_entity: BTreeMap<String, u64>,
}

impl FetchPlan {
    /// How many read statements the plan costs (one per chunk).
    pub fn fetch_statements(&self) -> usize {
        self.entities.values().map(|p| p.fetch.len()).sum()
    }
}

/// What to do for one entity type of one realm.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntityPlan {
    /// Distinct ids to read, in ascending numeric order, chunked per [`ChunkLimits`].
    pub fetch: Vec<Vec<String>>,
    /// Ids to deactivate without a read (none of them is in `fetch`).
    pub deactivate: Vec<Deactivation>,
    /// Merges seen, each once.
    pub merges: Vec<Merge>,
}

impl EntityPlan {
    /// Every id to fetch, unchunked.
    pub fn fetch_ids(&self) -> impl Iterator<Item = &str> {
        self.fetch.iter().flatten().map(String::as_str)
    }
}

/// An id to deactivate, and the newest change time behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deactivation {
    pub id: String,
    pub as_of: Option<DateTime<Utc>>,
}

/// `merged_away_id` was merged into `surviving_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    pub surviving_id: String,
    pub merged_away_id: String,
    pub as_of: Option<DateTime<Utc>>,
}

/// Coalesces a batch of changes into one plan per realm, ordered by realm id.
pub fn coalesce(changes: &[EntityChange], limits: &ChunkLimits) -> Vec<FetchPlan> {
    let mut realms: BTreeMap<&str, RealmState<'_>> = BTreeMap::new();
    for change in changes {
        let realm = realms.entry(change.realm_id.as_str()).or_default();
        let entity = change
            .entity
            .parse::<SyncEntity>()
            .ok()
            .filter(|e| e.arrives_by_webhook());
        let id = change.entity_id.trim();
        let Some(entity) = entity.filter(|_| !id.is_empty()) else {
            realm.ignored += 1;
            *realm
                .ignored_by_entity
                .entry(change.entity.clone())
                .or_default() += 1;
            continue;
        };
        let state = realm.entities.entry(entity).or_default();
        match change.operation {
            Operation::Delete => state.deactivate(id, change.last_updated),
            Operation::Merge => {
                state.fetch.insert(id);
                let merged_away = change.deleted_id.as_deref().map(str::trim);
                if let Some(merged_away) = merged_away.filter(|m| !m.is_empty() && *m != id) {
                    state.deactivate(merged_away, change.last_updated);
                    let at = state.merges.entry((id, merged_away)).or_default();
                    *at = newest(*at, change.last_updated);
                }
            }
            Operation::Create
            | Operation::Update
            | Operation::Void
            | Operation::Emailed
            | Operation::Other(_) => {
                state.fetch.insert(id);
            }
        }
    }
    realms
        .into_iter()
        .map(|(realm_id, realm)| realm.into_plan(realm_id, limits))
        .collect()
}

#[derive(Default)]
struct RealmState<'a> {
    entities: BTreeMap<SyncEntity, EntityState<'a>>,
    ignored: u64,
    ignored_by_entity: BTreeMap<String, u64>,
}

#[derive(Default)]
struct EntityState<'a> {
    fetch: BTreeSet<&'a str>,
    deactivate: BTreeMap<&'a str, Option<DateTime<Utc>>>,
    merges: BTreeMap<(&'a str, &'a str), Option<DateTime<Utc>>>,
}

impl<'a> EntityState<'a> {
    fn deactivate(&mut self, id: &'a str, at: Option<DateTime<Utc>>) {
        let as_of = self.deactivate.entry(id).or_default();
        *as_of = newest(*as_of, at);
    }
}

impl RealmState<'_> {
    fn into_plan(self, realm_id: &str, limits: &ChunkLimits) -> FetchPlan {
        let entities = self
            .entities
            .into_iter()
            .map(|(entity, state)| {
                let mut fetch: Vec<&str> = state.fetch.iter().copied().collect();
                fetch.sort_by(|a, b| id_order(a, b));
                let mut deactivate: Vec<Deactivation> = state
                    .deactivate
                    .into_iter()
                    .filter(|(id, _)| !state.fetch.contains(id))
                    .map(|(id, as_of)| Deactivation {
                        id: id.to_owned(),
                        as_of,
                    })
                    .collect();
                deactivate.sort_by(|a, b| id_order(&a.id, &b.id));
                let mut merges: Vec<Merge> = state
                    .merges
                    .into_iter()
                    .map(|((surviving, merged_away), as_of)| Merge {
                        surviving_id: surviving.to_owned(),
                        merged_away_id: merged_away.to_owned(),
                        as_of,
                    })
                    .collect();
                merges.sort_by(|a, b| {
                    id_order(&a.surviving_id, &b.surviving_id)
                        .then_with(|| id_order(&a.merged_away_id, &b.merged_away_id))
                });
                let plan = EntityPlan {
                    fetch: chunk_ids(&fetch, limits),
                    deactivate,
                    merges,
                };
                (entity, plan)
            })
            .collect();
        FetchPlan {
            realm_id: realm_id.to_owned(),
            entities,
            ignored: self.ignored,
            ignored_by_entity: self.ignored_by_entity,
        }
    }
}

/// Splits ids, in order, into statements within `limits` (each id costs its length plus two
/// quotes and a comma).
pub fn chunk_ids(ids: &[&str], limits: &ChunkLimits) -> Vec<Vec<String>> {
    let max_ids = limits.max_ids.max(1);
    let mut chunks: Vec<Vec<String>> = Vec::new();
    let mut chars = 0;
    for id in ids {
        let cost = id.len() + 3;
        match chunks.last_mut() {
            Some(chunk) if chunk.len() < max_ids && chars + cost <= limits.max_list_chars => {
                chunk.push((*id).to_owned());
                chars += cost;
            }
            _ => {
                chunks.push(vec![(*id).to_owned()]);
                chars = cost;
            }
        }
    }
    chunks
}

/// QBO ids are decimal numbers in strings: order them as numbers (`"9"` before `"10"`), and any
/// non-numeric id after the numeric ones, by text.
fn id_order(a: &str, b: &str) -> Ordering {
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    match (numeric(a), numeric(b)) {
        (true, true) => {
            let (x, y) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
            x.len()
                .cmp(&y.len())
                .then_with(|| x.cmp(y))
                .then_with(|| a.cmp(b))
        }
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.cmp(b),
    }
}

fn newest(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests;
