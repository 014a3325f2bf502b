//! In-memory storage of one Fyle resource collection, shaped for fast paging.
//!
//! Rows live in a slab (`slots`) with two ordered indexes: by id and by `(updated_at, write
//! sequence)`. The common list orders (`updated_at.desc`, `updated_at.desc,id`, `id.asc`,
//! `id.desc`, ...) walk an index directly, filter as they go and stop collecting after
//! `offset + limit` rows, so serving a 200-row page never clones or sorts the collection; only
//! `count` needs a full pass, and only when filters are present. A filter the walked index can
//! answer starts the walk where it first holds, skipping only rows that filter refuses (so the
//! rows and the count are the same): `updated_at` gt/gte/eq on an ascending `updated_at` walk
//! (lt/lte/eq descending) — the compare is on the same microseconds — and `id=gt.<integer>` on an
//! ascending id walk while every id is a JSON number (string ids compare as text, which is not the
//! index's order). Keyset paging asks for the same walk page after page with a moving bound
//! (`updated_at=gte.T&order=updated_at.asc,id.asc`, `…&id=gt.i&order=id.asc`), and the `count`
//! of each page walks the rest of the collection: an ascending walk therefore keeps the rows its
//! other filters matched, in walk order, until the collection is next written, and serves each
//! later page by a binary search for its bound — the rows and the count a walk would give, at the
//! cost of one walk per pass instead of one per page. A filter that fails on some row is never
//! kept, so errors come as the walk gives
//! them. Any other order sorts the filtered rows (references, not copies). A
//! uniqueness index (resource-specific key, see `resources.rs`) makes IntegrityError checks O(1).
//!
//! Ties: rows equal on every requested order key come out in **write order** (the order in which
//! they were last written; reversed for a descending first key), as a PostgreSQL index scan returns
//! them in physical order — there is no hidden `id` tie-break unless the request orders by `id`
//! too (`updated_at.desc,id`) or the sandbox runs with `implicit_id_tiebreak`. So a row rewritten
//! without changing its (second-rounded) `updated_at` moves within its tie, and a client paging by
//! `offset` over `order=updated_at.desc` alone can repeat one row and miss another, as it can in
//! production **(inferred: Fyle documents no tie order)**. Without an order, rows come by id.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    ops::Bound,
    sync::{Mutex, PoisonError},
};

use serde_json::{Map, Value};

use super::{
    list_filter::{Cell, RowView, cmp_rows, lookup, matches_all},
    list_query::{Column, Filter, ListQuery, Op},
};

/// A row id: integer for most resources, short string (`ou…`, `ba…`, `tg…`) for others.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RowId {
    /// Integer id.
    Int(i64),
    /// String id.
    Str(String),
}

impl RowId {
    /// Reads the `id` of a JSON object.
    pub fn of(v: &Value) -> Option<Self> {
        match v {
            Value::Number(n) => n.as_i64().map(RowId::Int),
            Value::String(s) => Some(
                s.parse::<i64>()
                    .map_or_else(|_| RowId::Str(s.clone()), RowId::Int),
            ),
            _ => None,
        }
    }

    /// JSON form.
    pub fn to_json(&self) -> Value {
        match self {
            RowId::Int(i) => Value::from(*i),
            RowId::Str(s) => Value::from(s.clone()),
        }
    }
}

/// One stored object.
#[derive(Debug, Clone)]
pub struct Row {
    /// Primary key.
    pub id: RowId,
    /// Write sequence within the collection (set by [`Collection::put`]); orders ties.
    pub seq: u64,
    /// `updated_at` in microseconds, mirrored from the JSON for fast compare.
    pub updated_us: i64,
    /// The full list-item object as served.
    pub json: Map<String, Value>,
}

impl RowView for Row {
    fn cell(&self, column: &Column) -> Cell<'_> {
        if column.is("updated_at") {
            Cell::Micros(self.updated_us)
        } else {
            lookup(&self.json, column)
        }
    }
}

/// Computes a row's uniqueness key, if the resource has one.
pub type UniqueKeyFn = fn(&Map<String, Value>) -> Option<String>;

/// One collection with its indexes.
#[derive(Debug)]
pub struct Collection {
    slots: Vec<Option<Row>>,
    free: Vec<usize>,
    by_id: BTreeMap<RowId, usize>,
    by_updated: BTreeSet<(i64, u64, usize)>,
    unique: HashMap<String, RowId>,
    unique_key: Option<UniqueKeyFn>,
    next_seq: u64,
    /// Rows whose JSON `id` is a string (compared as text by filters).
    text_ids: usize,
    /// Counts writes (puts and removes): what a [`KeptWalk`] was computed under.
    generation: u64,
    /// The last ascending walk's matches, valid while `generation` has not moved.
    kept: Mutex<Option<KeptWalk>>,
}

/// The rows of an ascending walk that match a query's filters other than its start bounds, as
/// (walk key, slot) in walk order, computed at one `generation` of the collection. The key is
/// the id of an id walk, the `updated_at` of an `updated_at` walk.
#[derive(Debug)]
struct KeptWalk {
    generation: u64,
    walk: Walk,
    filters: Vec<Filter>,
    matched: Vec<(i64, usize)>,
}

/// An ascending walk a [`KeptWalk`] can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// `by_id`; its bound is `id=gt.<integer>`.
    Id,
    /// `by_updated`, ties as [`TieSort`] gives them; its bounds are `updated_at` gt/gte.
    Updated { ties_by_id: Option<bool> },
}

impl Walk {
    /// Where a row with walk key `key` stands against filter `f`, when `f` is a start bound of
    /// this walk: `Some(true)` when the row passes it. `None` for any other filter.
    fn passes_bound(self, f: &Filter, key: i64) -> Option<bool> {
        match self {
            Walk::Id => id_floor_of(f).map(|after| key > after),
            Walk::Updated { .. } => {
                let at = f.operand_instant.filter(|_| f.column.is("updated_at"))?;
                match f.op {
                    Op::Gt => Some(key > at),
                    Op::Gte => Some(key >= at),
                    _ => None,
                }
            }
        }
    }

    fn is_bound(self, f: &Filter) -> bool {
        self.passes_bound(f, 0).is_some()
    }
}

enum Fast {
    Id {
        desc: bool,
    },
    /// By `updated_at`; ties by id (`Some(desc)`) or in write order (`None`).
    Updated {
        desc: bool,
        ties_by_id: Option<bool>,
    },
}

fn fast_order(q: &ListQuery) -> Option<Fast> {
    let k = &q.order;
    match k.len() {
        0 => Some(Fast::Id { desc: false }),
        1 if k[0].column.is("id") => Some(Fast::Id { desc: k[0].desc }),
        1 if k[0].column.is("updated_at") => Some(Fast::Updated {
            desc: k[0].desc,
            ties_by_id: q.implicit_id_tiebreak.then_some(false),
        }),
        2 if k[0].column.is("updated_at") && k[1].column.is("id") => Some(Fast::Updated {
            desc: k[0].desc,
            ties_by_id: Some(k[1].desc),
        }),
        _ => None,
    }
}

impl Collection {
    /// An empty collection with an optional uniqueness rule.
    pub fn new(unique_key: Option<UniqueKeyFn>) -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            by_id: BTreeMap::new(),
            by_updated: BTreeSet::new(),
            unique: HashMap::new(),
            unique_key,
            next_seq: 0,
            text_ids: 0,
            generation: 0,
            kept: Mutex::new(None),
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// A row by id.
    pub fn get(&self, id: &RowId) -> Option<&Row> {
        self.by_id.get(id).and_then(|s| self.slots[*s].as_ref())
    }

    /// Rows in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Row> {
        self.by_id.values().filter_map(|s| self.slots[*s].as_ref())
    }

    /// The id holding a uniqueness key, if any.
    pub fn unique_holder(&self, key: &str) -> Option<&RowId> {
        self.unique.get(key)
    }

    /// The uniqueness key of an object under this collection's rule.
    pub fn unique_key_of(&self, json: &Map<String, Value>) -> Option<String> {
        self.unique_key.and_then(|f| f(json))
    }

    /// Inserts or replaces a row (it becomes the last written); returns the previous version.
    pub fn put(&mut self, mut row: Row) -> Option<Row> {
        let old = self.remove(&row.id);
        self.generation += 1;
        self.next_seq += 1;
        row.seq = self.next_seq;
        if let Some(key) = self.unique_key_of(&row.json) {
            self.unique.insert(key, row.id.clone());
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        self.by_id.insert(row.id.clone(), slot);
        self.by_updated.insert((row.updated_us, row.seq, slot));
        self.text_ids += usize::from(has_text_id(&row));
        self.slots[slot] = Some(row);
        old
    }

    /// Removes a row.
    pub fn remove(&mut self, id: &RowId) -> Option<Row> {
        let slot = self.by_id.remove(id)?;
        self.generation += 1;
        let row = self.slots[slot].take()?;
        self.by_updated.remove(&(row.updated_us, row.seq, slot));
        self.text_ids -= usize::from(has_text_id(&row));
        if let Some(key) = self.unique_key_of(&row.json)
            && self.unique.get(&key) == Some(&row.id)
        {
            self.unique.remove(&key);
        }
        self.free.push(slot);
        Some(row)
    }

    fn row_at(&self, slot: usize) -> Option<&Row> {
        self.slots.get(slot).and_then(Option::as_ref)
    }

    /// Serves one page: `(count of all matching rows, rows of the page)`.
    pub fn list(&self, q: &ListQuery) -> Result<(usize, Vec<&Row>), String> {
        match fast_order(q) {
            Some(Fast::Id { desc }) => {
                if desc {
                    self.scan(self.by_id.values().copied().rev(), q)
                } else {
                    let Some(after) = self.id_floor(q) else {
                        return self.scan(self.by_id.values().copied(), q);
                    };
                    if let Some(served) = self.kept_walk(Walk::Id, q) {
                        return Ok(served);
                    }
                    let from = Bound::Excluded(RowId::Int(after));
                    self.scan(
                        self.by_id.range((from, Bound::Unbounded)).map(|(_, s)| *s),
                        q,
                    )
                }
            }
            Some(Fast::Updated { desc, ties_by_id }) => {
                // The index yields ties in write order (reversed when descending); sort each run
                // of equal timestamps by id only when asked to. A bound starts the walk at the
                // edge of a whole run of its timestamp.
                if desc {
                    let to = updated_bound(q, desc).unwrap_or(i64::MAX);
                    let run = self.by_updated.range(..=(to, u64::MAX, usize::MAX)).rev();
                    self.scan(TieSort::new(self, run, ties_by_id), q)
                } else {
                    let walk = Walk::Updated { ties_by_id };
                    if q.filters.iter().any(|f| walk.is_bound(f))
                        && let Some(served) = self.kept_walk(walk, q)
                    {
                        return Ok(served);
                    }
                    let from = updated_bound(q, desc).unwrap_or(i64::MIN);
                    let run = self.by_updated.range((from, 0, 0)..);
                    self.scan(TieSort::new(self, run, ties_by_id), q)
                }
            }
            None => {
                let mut rows = Vec::new();
                for row in self.iter() {
                    if matches_all(&q.filters, row)? {
                        rows.push(row);
                    }
                }
                let first_desc = q.order.first().is_some_and(|k| k.desc);
                rows.sort_by(|a, b| {
                    cmp_rows(&q.order, *a, *b).then_with(|| {
                        if q.implicit_id_tiebreak {
                            a.id.cmp(&b.id)
                        } else if first_desc {
                            b.seq.cmp(&a.seq)
                        } else {
                            a.seq.cmp(&b.seq)
                        }
                    })
                });
                let count = rows.len();
                Ok((
                    count,
                    rows.into_iter().skip(q.offset).take(q.limit).collect(),
                ))
            }
        }
    }

    /// The integer `i` of an `id=gt.i` filter, when an ascending id walk may start after it:
    /// every id is a JSON number, so the filter compares as the index orders (an id `n <= i`
    /// is never greater than `i`, even where `f64` rounds).
    fn id_floor(&self, q: &ListQuery) -> Option<i64> {
        if self.text_ids > 0 {
            return None;
        }
        q.filters.iter().filter_map(id_floor_of).max()
    }

    /// A page of ascending walk `walk` from the rows its filters other than the walk's start
    /// bounds matched, kept from the previous page of the same walk while the collection is
    /// unwritten: the rows start at the first that passes every bound. `None` when a filter
    /// fails on some row (the walk from the bound then answers as it always has: it may never
    /// reach that row).
    fn kept_walk(&self, walk: Walk, q: &ListQuery) -> Option<(usize, Vec<&Row>)> {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let others = || q.filters.iter().filter(|f| !walk.is_bound(f));
        let fresh = kept.as_ref().is_some_and(|k| {
            k.generation == self.generation && k.walk == walk && k.filters.iter().eq(others())
        });
        if !fresh {
            let filters: Vec<Filter> = others().cloned().collect();
            let matched = match walk {
                Walk::Id => self.matching(
                    self.by_id.iter().filter_map(|(id, slot)| match id {
                        RowId::Int(id) => Some((*id, *slot)),
                        RowId::Str(_) => None,
                    }),
                    &filters,
                )?,
                Walk::Updated { ties_by_id } => self.matching(
                    TieSort::new(self, self.by_updated.iter(), ties_by_id)
                        .filter_map(|slot| Some((self.row_at(slot)?.updated_us, slot))),
                    &filters,
                )?,
            };
            *kept = Some(KeptWalk {
                generation: self.generation,
                walk,
                filters,
                matched,
            });
        }
        let matched = &kept.as_ref()?.matched;
        let bounds: Vec<&Filter> = q.filters.iter().filter(|f| walk.is_bound(f)).collect();
        let start = matched.partition_point(|(key, _)| {
            !bounds
                .iter()
                .all(|f| walk.passes_bound(f, *key).unwrap_or(true))
        });
        let rest = &matched[start..];
        let page = rest
            .iter()
            .skip(q.offset)
            .take(q.limit)
            .filter_map(|(_, slot)| self.row_at(*slot))
            .collect();
        Some((rest.len(), page))
    }

    /// The (key, slot)s of `walk` whose rows pass `filters`; `None` when a filter fails on one.
    fn matching(
        &self,
        walk: impl Iterator<Item = (i64, usize)>,
        filters: &[Filter],
    ) -> Option<Vec<(i64, usize)>> {
        let mut matched = Vec::new();
        for (key, slot) in walk {
            let Some(row) = self.row_at(slot) else {
                continue;
            };
            if matches_all(filters, row).ok()? {
                matched.push((key, slot));
            }
        }
        Some(matched)
    }

    fn scan(
        &self,
        slots: impl Iterator<Item = usize>,
        q: &ListQuery,
    ) -> Result<(usize, Vec<&Row>), String> {
        if q.filters.is_empty() {
            let page = slots
                .skip(q.offset)
                .take(q.limit)
                .filter_map(|s| self.row_at(s))
                .collect();
            return Ok((self.len(), page));
        }
        let mut count = 0;
        let mut page = Vec::with_capacity(q.limit.min(256));
        for row in slots.filter_map(|s| self.row_at(s)) {
            if matches_all(&q.filters, row)? {
                if count >= q.offset && page.len() < q.limit {
                    page.push(row);
                }
                count += 1;
            }
        }
        Ok((count, page))
    }
}

/// Where a walk of `by_updated` may start (ascending: the latest lower bound of the `updated_at`
/// gt/gte/eq filters) or end (descending: the earliest upper bound of lt/lte/eq), in µs. Rows
/// beyond it fail that filter, whose compare is on the same microseconds as the index.
fn updated_bound(q: &ListQuery, desc: bool) -> Option<i64> {
    let bounds = q.filters.iter().filter_map(|f| {
        let at = f.operand_instant.filter(|_| f.column.is("updated_at"))?;
        let bounds_it = if desc {
            matches!(f.op, Op::Lt | Op::Lte | Op::Eq)
        } else {
            matches!(f.op, Op::Gt | Op::Gte | Op::Eq)
        };
        bounds_it.then_some(at)
    });
    if desc { bounds.min() } else { bounds.max() }
}

/// The integer `i` of an `id=gt.i` filter.
fn id_floor_of(f: &Filter) -> Option<i64> {
    (f.column.is("id") && f.op == Op::Gt)
        .then(|| f.operand.trim().parse::<i64>().ok())
        .flatten()
}

/// Whether a row's JSON `id` is a string.
fn has_text_id(row: &Row) -> bool {
    matches!(row.json.get("id"), Some(Value::String(_)))
}

/// Yields index slots; when `ties_by_id` is set, each run of equal timestamps is sorted by id
/// (descending for `Some(true)`), otherwise runs keep the index's write order.
struct TieSort<'a, I: Iterator<Item = &'a (i64, u64, usize)>> {
    coll: &'a Collection,
    inner: std::iter::Peekable<I>,
    ties_by_id: Option<bool>,
    run: std::vec::IntoIter<usize>,
}

impl<'a, I: Iterator<Item = &'a (i64, u64, usize)>> TieSort<'a, I> {
    fn new(coll: &'a Collection, inner: I, ties_by_id: Option<bool>) -> Self {
        Self {
            coll,
            inner: inner.peekable(),
            ties_by_id,
            run: Vec::new().into_iter(),
        }
    }
}

impl<'a, I: Iterator<Item = &'a (i64, u64, usize)>> Iterator for TieSort<'a, I> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if let Some(s) = self.run.next() {
            return Some(s);
        }
        let (ts, _, slot) = self.inner.next()?;
        let Some(desc) = self.ties_by_id else {
            return Some(*slot);
        };
        if self.inner.peek().is_none_or(|(t, _, _)| t != ts) {
            return Some(*slot);
        }
        let mut run = vec![*slot];
        while let Some((t, _, s)) = self.inner.peek() {
            if t != ts {
                break;
            }
            run.push(*s);
            self.inner.next();
        }
        let id = |s: &usize| self.coll.row_at(*s).map(|r| &r.id);
        run.sort_by(|a, b| {
            let o = id(a).cmp(&id(b));
            if desc { o.reverse() } else { o }
        });
        self.run = run.into_iter();
        self.run.next()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::fyle::list_query::parse_list_query;

    fn row(id: i64, updated_us: i64, name: &str) -> Row {
        let json = json!({"id": id, "name": name, "updated_at": updated_us});
        Row {
            id: RowId::Int(id),
            seq: 0,
            updated_us,
            json: json.as_object().cloned().unwrap_or_default(),
        }
    }

    fn page(c: &Collection, pairs: &[(&str, &str)]) -> (usize, Vec<i64>) {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let q = parse_list_query(&owned, 50).expect("query parses");
        let (count, rows) = c.list(&q).expect("list works");
        let ids = rows
            .iter()
            .map(|r| match r.id {
                RowId::Int(i) => i,
                RowId::Str(_) => -1,
            })
            .collect();
        (count, ids)
    }

    #[test]
    fn ties_come_in_write_order_unless_id_is_requested() {
        let mut c = Collection::new(None);
        for (id, ts) in [(1, 10), (2, 30), (3, 30), (4, 20), (5, 30)] {
            c.put(row(id, ts, &format!("n{id}")));
        }
        c.put(row(2, 30, "n2")); // rewritten, same timestamp: now the last written of its tie
        let order = |o: &str| page(&c, &[("order", o)]).1;
        assert_eq!(order("updated_at.desc"), vec![2, 5, 3, 4, 1]);
        assert_eq!(order("updated_at.asc"), vec![1, 4, 3, 5, 2]);
        assert_eq!(order("updated_at.desc,id"), vec![2, 3, 5, 4, 1]);
        assert_eq!(order("updated_at.desc,id.desc"), vec![5, 3, 2, 4, 1]);
        assert_eq!(order("updated_at,id.desc"), vec![1, 4, 5, 3, 2]);
        assert_eq!(
            page(&c, &[("order", "id.desc"), ("limit", "2"), ("offset", "1")]).1,
            vec![4, 3]
        );
        // the generic sort path agrees with the index path
        assert_eq!(order("updated_at.desc,org_id"), vec![2, 5, 3, 4, 1]);
        assert_eq!(order("updated_at.desc,name"), vec![2, 3, 5, 4, 1]);
    }

    #[test]
    fn implicit_id_tiebreak_restores_a_total_order() {
        let mut c = Collection::new(None);
        for (id, ts) in [(3, 30), (1, 30), (2, 30)] {
            c.put(row(id, ts, "x"));
        }
        let owned = vec![("order".to_owned(), "updated_at.desc".to_owned())];
        let mut q = parse_list_query(&owned, 50).expect("query parses");
        let ids = |q: &ListQuery| -> Vec<RowId> {
            c.list(q)
                .expect("list")
                .1
                .iter()
                .map(|r| r.id.clone())
                .collect()
        };
        assert_eq!(ids(&q), vec![RowId::Int(2), RowId::Int(1), RowId::Int(3)]);
        q.implicit_id_tiebreak = true;
        assert_eq!(ids(&q), vec![RowId::Int(1), RowId::Int(2), RowId::Int(3)]);
    }

    #[test]
    fn filtered_pages_count_all_matches() {
        let mut c = Collection::new(None);
        for id in 1..=10 {
            c.put(row(id, id * 10, "x"));
        }
        let (count, ids) = page(
            &c,
            &[
                ("order", "updated_at.desc"),
                ("id", "gt.3"),
                ("limit", "2"),
                ("offset", "2"),
            ],
        );
        assert_eq!(count, 7);
        assert_eq!(ids, vec![8, 7]);
    }

    /// Every query the index starts serve, next to the same query forced down the generic path
    /// (a trailing `name` key, which no two rows tie on after `id`): same rows, same count.
    #[test]
    fn index_starts_serve_the_same_rows_and_count_as_a_full_walk() {
        use crate::fyle::list_filter::format_micros;

        let base = 1_700_000_000_000_000_i64;
        let mut c = Collection::new(None);
        // Ties of five rows per stamp, ids out of stamp order, one row rewritten.
        for id in 1..=60_i64 {
            let stamp = base + ((id * 7) % 12) * 1_000_000;
            c.put(row(id, stamp, &format!("n{id:03}")));
        }
        c.put(row(17, base + 5_000_000, "n017"));
        let at = |k: i64| format_micros(base + k * 1_000_000);
        let mut queries: Vec<Vec<(String, String)>> = Vec::new();
        for k in [0, 3, 5, 11, 12] {
            for (op, order) in [
                ("gte", "updated_at.asc,id.asc"),
                ("gt", "updated_at.asc,id.asc"),
                ("eq", "updated_at.asc,id.asc"),
                ("lte", "updated_at.desc,id.desc"),
                ("lt", "updated_at.desc,id.desc"),
                ("eq", "updated_at.desc,id.desc"),
            ] {
                queries.push(vec![
                    ("updated_at".into(), format!("{op}.{}", at(k))),
                    ("order".into(), order.into()),
                ]);
            }
            for after in [0, 17, 30, 59, 60] {
                queries.push(vec![
                    ("updated_at".into(), format!("eq.{}", at(k))),
                    ("id".into(), format!("gt.{after}")),
                    ("order".into(), "id.asc".into()),
                ]);
            }
        }
        for mut q in queries {
            for (offset, limit) in [("0", "4"), ("3", "2"), ("0", "200")] {
                q.retain(|(k, _)| k != "offset" && k != "limit");
                q.push(("offset".into(), offset.into()));
                q.push(("limit".into(), limit.into()));
                let fast = parse_list_query(&q, 50).expect("query parses");
                let mut slow = fast.clone();
                slow.order.extend(
                    parse_list_query(&[("order".into(), "name".into())], 50)
                        .expect("query parses")
                        .order,
                );
                let ids = |q: &ListQuery| {
                    let (count, rows) = c.list(q).expect("list works");
                    (count, rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>())
                };
                assert_eq!(ids(&fast), ids(&slow), "{q:?}");
            }
        }
    }

    #[test]
    fn keyset_pages_see_rows_written_between_them() {
        use crate::fyle::list_filter::format_micros;

        let tie = 1_700_000_000_000_000_i64;
        let mut c = Collection::new(None);
        for id in (2..=40_i64).step_by(2) {
            c.put(row(id, tie, "x"));
        }
        c.put(row(41, tie + 1, "later"));
        let drain = |c: &Collection, after: i64| {
            let (at, after) = (format!("eq.{}", format_micros(tie)), format!("gt.{after}"));
            let (at, after) = (("updated_at", at.as_str()), ("id", after.as_str()));
            page(c, &[at, after, ("order", "id.asc"), ("limit", "5")])
        };
        assert_eq!(drain(&c, 0), (20, vec![2, 4, 6, 8, 10]));
        assert_eq!(drain(&c, 10), (15, vec![12, 14, 16, 18, 20]));
        // Written between pages: one row joins the tie ahead of the drain, one leaves it.
        c.put(row(23, tie, "x"));
        c.put(row(24, tie + 2, "moved"));
        assert_eq!(drain(&c, 20), (10, vec![22, 23, 26, 28, 30]));
        c.remove(&RowId::Int(32));
        assert_eq!(drain(&c, 30), (4, vec![34, 36, 38, 40]));

        // The same for a scan by `updated_at`, each page from the last stamp it read.
        let scan = |c: &Collection, from: i64| {
            let from = format!("gte.{}", format_micros(tie + from));
            let order = ("order", "updated_at.asc,id.asc");
            page(c, &[("updated_at", from.as_str()), order, ("limit", "2")])
        };
        assert_eq!(scan(&c, 1), (2, vec![41, 24]));
        c.put(row(50, tie + 1, "joins"));
        c.put(row(41, tie + 3, "moved"));
        assert_eq!(scan(&c, 1), (3, vec![50, 24]));
        assert_eq!(scan(&c, 3), (1, vec![41]));
    }

    #[test]
    fn string_ids_compare_as_text_so_an_id_filter_walks_every_row() {
        let mut c = Collection::new(None);
        for id in ["9", "10", "11"] {
            let json = json!({"id": id, "name": id});
            c.put(Row {
                id: RowId::of(&json["id"]).expect("an id"),
                seq: 0,
                updated_us: 0,
                json: json.as_object().cloned().unwrap_or_default(),
            });
        }
        // As text, "9" > "10" and "11" > "10"; as the index orders them, only 11 is.
        assert_eq!(
            page(&c, &[("id", "gt.10"), ("order", "id.asc")]),
            (2, vec![9, 11])
        );
    }

    #[test]
    fn replacing_a_row_moves_it_in_the_updated_index() {
        let mut c = Collection::new(Some(|m| m.get("name").map(|v| v.to_string())));
        c.put(row(1, 10, "a"));
        c.put(row(2, 20, "b"));
        c.put(row(1, 30, "c"));
        assert_eq!(c.len(), 2);
        assert_eq!(page(&c, &[("order", "updated_at.desc")]).1, vec![1, 2]);
        assert!(c.unique_holder("\"a\"").is_none());
        assert_eq!(c.unique_holder("\"c\""), Some(&RowId::Int(1)));
        c.remove(&RowId::Int(2));
        assert_eq!(page(&c, &[]).0, 1);
    }
}
