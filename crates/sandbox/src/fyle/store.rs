//! In-memory storage of one Fyle resource collection, shaped for fast paging.
//!
//! Rows live in a slab (`slots`) with two ordered indexes: by id and by `(updated_at, id)`. The
//! common list orders (`updated_at.desc`, `updated_at.desc,id`, `id.asc`, `id.desc`, ...) walk an
//! index directly, filter as they go and stop collecting after `offset + limit` rows, so serving a
//! 200-row page never clones or sorts the collection; only `count` needs a full pass, and only when
//! filters are present. Any other order sorts the filtered rows (references, not copies).
//! A uniqueness index (resource-specific key, see `resources.rs`) makes IntegrityError checks O(1).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Map, Value};

use super::{
    list_filter::{Cell, RowView, cmp_rows, lookup, matches_all},
    list_query::{Column, ListQuery},
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
    by_updated: BTreeSet<(i64, RowId, usize)>,
    unique: HashMap<String, RowId>,
    unique_key: Option<UniqueKeyFn>,
}

enum Fast {
    Id { desc: bool },
    Updated { desc: bool, id_desc: bool },
}

fn fast_order(q: &ListQuery) -> Option<Fast> {
    let k = &q.order;
    match k.len() {
        0 => Some(Fast::Id { desc: false }),
        1 if k[0].column.is("id") => Some(Fast::Id { desc: k[0].desc }),
        1 if k[0].column.is("updated_at") => Some(Fast::Updated {
            desc: k[0].desc,
            id_desc: false,
        }),
        2 if k[0].column.is("updated_at") && k[1].column.is("id") => Some(Fast::Updated {
            desc: k[0].desc,
            id_desc: k[1].desc,
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

    /// Inserts or replaces a row; returns the previous version.
    pub fn put(&mut self, row: Row) -> Option<Row> {
        let old = self.remove(&row.id);
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
        self.by_updated
            .insert((row.updated_us, row.id.clone(), slot));
        self.slots[slot] = Some(row);
        old
    }

    /// Removes a row.
    pub fn remove(&mut self, id: &RowId) -> Option<Row> {
        let slot = self.by_id.remove(id)?;
        let row = self.slots[slot].take()?;
        self.by_updated
            .remove(&(row.updated_us, row.id.clone(), slot));
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
                let it = self.by_id.values().copied();
                if desc {
                    self.scan(it.rev(), q)
                } else {
                    self.scan(it, q)
                }
            }
            Some(Fast::Updated { desc, id_desc }) => {
                // Within equal timestamps the index yields ids ascending (forward) or descending
                // (reverse); flip those runs when the requested id direction differs.
                let flip = desc != id_desc;
                if desc {
                    self.scan(TieFlip::new(self.by_updated.iter().rev(), flip), q)
                } else {
                    self.scan(TieFlip::new(self.by_updated.iter(), flip), q)
                }
            }
            None => {
                let mut rows = Vec::new();
                for row in self.iter() {
                    if matches_all(&q.filters, row)? {
                        rows.push(row);
                    }
                }
                rows.sort_by(|a, b| cmp_rows(&q.order, *a, *b));
                let count = rows.len();
                Ok((
                    count,
                    rows.into_iter().skip(q.offset).take(q.limit).collect(),
                ))
            }
        }
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

/// Yields index slots, reversing each run of equal timestamps when `flip` is set.
struct TieFlip<'a, I: Iterator<Item = &'a (i64, RowId, usize)>> {
    inner: std::iter::Peekable<I>,
    flip: bool,
    run: Vec<usize>,
}

impl<'a, I: Iterator<Item = &'a (i64, RowId, usize)>> TieFlip<'a, I> {
    fn new(inner: I, flip: bool) -> Self {
        Self {
            inner: inner.peekable(),
            flip,
            run: Vec::new(),
        }
    }
}

impl<'a, I: Iterator<Item = &'a (i64, RowId, usize)>> Iterator for TieFlip<'a, I> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if let Some(s) = self.run.pop() {
            return Some(s);
        }
        let (ts, _, slot) = self.inner.next()?;
        if !self.flip || self.inner.peek().is_none_or(|(t, _, _)| t != ts) {
            return Some(*slot);
        }
        // Collect the run; popping from the end yields it reversed.
        self.run.push(*slot);
        while let Some((t, _, s)) = self.inner.peek() {
            if t != ts {
                break;
            }
            self.run.push(*s);
            self.inner.next();
        }
        self.run.pop()
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
    fn fast_orders_match_generic_sort() {
        let mut c = Collection::new(None);
        for (id, ts) in [(1, 10), (2, 30), (3, 30), (4, 20), (5, 30)] {
            c.put(row(id, ts, &format!("n{id}")));
        }
        assert_eq!(
            page(&c, &[("order", "updated_at.desc")]).1,
            vec![2, 3, 5, 4, 1]
        );
        assert_eq!(
            page(&c, &[("order", "updated_at.desc,id.desc")]).1,
            vec![5, 3, 2, 4, 1]
        );
        assert_eq!(
            page(&c, &[("order", "updated_at.asc")]).1,
            vec![1, 4, 2, 3, 5]
        );
        assert_eq!(
            page(&c, &[("order", "updated_at,id.desc")]).1,
            vec![1, 4, 5, 3, 2]
        );
        assert_eq!(
            page(&c, &[("order", "id.desc"), ("limit", "2"), ("offset", "1")]).1,
            vec![4, 3]
        );
        // generic path agrees
        assert_eq!(
            page(&c, &[("order", "updated_at.desc,name")]).1,
            vec![2, 3, 5, 4, 1]
        );
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
