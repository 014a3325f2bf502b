//! The pager against an in-memory Fyle collection that changes between pages: the properties the
//! module docs argue, checked over many random schedules of writes (ties included).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{Collector, Filters, Pager, own_rows};

const ORG: &str = "orA";
const EPOCH_US: i64 = 1_700_000_000_000_000;

fn text(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .expect("instant")
        .format("%Y-%m-%dT%H:%M:%S%.6f+00:00")
        .to_string()
}

fn micros(s: &str) -> i64 {
    DateTime::parse_from_rfc3339(s)
        .expect("operand is RFC 3339")
        .timestamp_micros()
}

/// A Fyle collection: id → (updated_at µs, name). Stamps come from `clock`, which only moves
/// forward and may stand still (ties).
#[derive(Debug, Clone, Default)]
struct Model {
    rows: BTreeMap<i64, (i64, String)>,
    clock: i64,
    next_id: i64,
    version: u64,
}

impl Model {
    fn new() -> Self {
        Self {
            clock: EPOCH_US,
            next_id: 1,
            ..Self::default()
        }
    }

    fn write(&mut self, id: i64) {
        self.version += 1;
        self.rows
            .insert(id, (self.clock, format!("row {id} v{}", self.version)));
    }

    fn create(&mut self) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.write(id);
        id
    }

    /// A bulk post: `n` rows sharing one stamp.
    fn bulk(&mut self, n: usize) {
        for _ in 0..n {
            self.create();
        }
    }

    fn json(&self, id: i64) -> Value {
        let (us, name) = &self.rows[&id];
        json!({"id": id, "org_id": ORG, "updated_at": text(*us), "name": name})
    }

    /// Serves a list query as Fyle does: filters, `order`, `limit`; `count` of all matches.
    fn serve(&self, query: &[(String, String)]) -> (Vec<Value>, u64) {
        let mut limit = 50;
        let mut order = String::new();
        let mut keep: Vec<Box<dyn Fn(i64, i64) -> bool>> = Vec::new();
        for (k, v) in query {
            let (op, operand) = v.split_once('.').unwrap_or(("", ""));
            match k.as_str() {
                "limit" => limit = v.parse().expect("limit"),
                "order" => order.clone_from(v),
                "updated_at" => {
                    let t = micros(operand);
                    keep.push(match op {
                        "gte" => Box::new(move |_, us| us >= t),
                        "gt" => Box::new(move |_, us| us > t),
                        "eq" => Box::new(move |_, us| us == t),
                        _ => panic!("op {op}"),
                    });
                }
                "id" => {
                    let i: i64 = operand.parse().expect("id");
                    assert_eq!(op, "gt");
                    keep.push(Box::new(move |id, _| id > i));
                }
                other => panic!("unexpected parameter {other}"),
            }
        }
        let mut ids: Vec<(i64, i64)> = self
            .rows
            .iter()
            .filter(|(id, (us, _))| keep.iter().all(|f| f(**id, *us)))
            .map(|(id, (us, _))| (*us, *id))
            .collect();
        match order.as_str() {
            "updated_at.asc,id.asc" => ids.sort_unstable(),
            "updated_at.desc,id.desc" => ids.sort_unstable_by(|a, b| b.cmp(a)),
            "id.asc" => ids.sort_unstable_by_key(|(_, id)| *id),
            o => panic!("order {o}"),
        }
        let count = ids.len() as u64;
        let page = ids
            .into_iter()
            .take(limit)
            .map(|(_, id)| self.json(id))
            .collect();
        (page, count)
    }
}

/// Tiny deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Pass {
    rows: Vec<Value>,
    watermark: Option<DateTime<Utc>>,
    pages: usize,
}

/// Runs one pass; `between` mutates the model after each page.
fn pass(
    model: &mut Model,
    limit: usize,
    from: Option<DateTime<Utc>>,
    mut between: impl FnMut(&mut Model),
) -> Pass {
    let mut pager = Pager::new(&Filters::new(), from, limit).expect("pager");
    let mut collector = Collector::default();
    let mut pages = 0;
    while let Some(q) = pager.query() {
        let (rows, count) = model.serve(&q);
        pages += 1;
        assert!(pages < 10_000, "the pass does not terminate");
        let out = pager.accept(rows, Some(count)).expect("page accepted");
        collector.add(own_rows(ORG, out).0);
        between(model);
    }
    Pass {
        rows: collector.rows,
        watermark: pager.watermark(),
        pages,
    }
}

fn ids(rows: &[Value]) -> BTreeSet<i64> {
    rows.iter().map(|r| r["id"].as_i64().expect("id")).collect()
}

#[test]
fn a_quiet_collection_is_read_once_in_the_minimum_of_pages() {
    let mut m = Model::new();
    for _ in 0..1000 {
        m.clock += 1;
        m.create();
    }
    let p = pass(&mut m, 200, None, |_| {});
    assert_eq!(p.rows.len(), 1000);
    assert_eq!(ids(&p.rows).len(), 1000);
    // Each `gte` page re-reads the row at the cursor, so a scan page brings 199 new rows.
    assert_eq!(
        p.pages,
        1 + 1000usize.div_ceil(199),
        "head page + scan pages"
    );
    assert_eq!(p.watermark.map(|w| w.timestamp_micros()), Some(m.clock));

    let mut m = Model::new();
    m.bulk(150);
    let small = pass(&mut m, 200, None, |_| {});
    assert_eq!(small.rows.len(), 150);
    assert_eq!(
        small.pages, 1,
        "a collection smaller than a page is its head"
    );
}

#[test]
fn ties_larger_than_a_page_are_drained_by_id() {
    let mut m = Model::new();
    m.bulk(450); // one stamp
    m.clock += 1;
    m.bulk(3);
    m.clock += 1;
    m.bulk(200); // exactly one page at one stamp
    let p = pass(&mut m, 200, None, |_| {});
    assert_eq!(ids(&p.rows).len(), 653);
    assert!(p.pages <= 12, "{} pages", p.pages);
}

#[test]
fn a_page_of_rows_already_read_at_the_cursor_stamp_does_not_stall_the_pass() {
    // 150 rows at one stamp followed by singles: the seen set passes half a page.
    let mut m = Model::new();
    for _ in 0..50 {
        m.clock += 1;
        m.create();
    }
    m.bulk(150);
    for _ in 0..300 {
        m.clock += 1;
        m.create();
    }
    let p = pass(&mut m, 200, None, |_| {});
    assert_eq!(ids(&p.rows).len(), 500);
}

#[test]
fn incremental_pass_reads_from_the_watermark_inclusive() {
    let mut m = Model::new();
    m.bulk(10);
    let first = pass(&mut m, 200, None, |_| {});
    let w = first.watermark.expect("watermark");
    m.write(3); // same stamp as the watermark (clock did not move)
    m.clock += 5;
    m.write(4);
    let next = pass(&mut m, 200, Some(w), |_| {});
    assert!(ids(&next.rows).is_superset(&BTreeSet::from([3, 4])));
}

#[test]
fn reserved_parameters_cannot_be_filters() {
    for k in ["order", "limit", "offset", "updated_at"] {
        assert!(Pager::new(&Filters::new().eq(k, 1), None, 200).is_err());
    }
}

#[test]
fn out_of_order_pages_fail_the_pass() {
    let mut pager = Pager::new(&Filters::new(), None, 2).expect("pager");
    let rows = vec![
        json!({"id": 1, "updated_at": text(EPOCH_US)}),
        json!({"id": 2, "updated_at": text(EPOCH_US + 5)}),
    ];
    assert!(
        pager.accept(rows, Some(10)).is_err(),
        "head must be descending"
    );
    let mut pager = Pager::new(&Filters::new(), None, 2).expect("pager");
    assert!(
        pager
            .accept(vec![json!({"id": 1, "name": "no stamp"})], Some(1))
            .is_err()
    );
}

#[test]
fn a_server_with_a_smaller_page_than_asked_is_followed_not_trusted() {
    // The server caps pages at 30 rows although 200 were asked: `count` shows more.
    let mut m = Model::new();
    for _ in 0..100 {
        m.clock += 1;
        m.create();
    }
    let mut pager = Pager::new(&Filters::new(), None, 200).expect("pager");
    let mut got = Collector::default();
    while let Some(mut q) = pager.query() {
        for (k, v) in &mut q {
            if k == "limit" {
                *v = v.parse::<usize>().expect("limit").min(30).to_string();
            }
        }
        let (rows, count) = m.serve(&q);
        got.add(own_rows(ORG, pager.accept(rows, Some(count)).expect("page")).0);
    }
    assert_eq!(got.rows.len(), 100);
}

#[test]
fn other_orgs_rows_are_dropped_and_counted() {
    let (rows, foreign) = own_rows(
        ORG,
        vec![
            json!({"id": 1, "org_id": ORG}),
            json!({"id": 1, "org_id": "orOther"}),
            json!({"id": 7, "display_name": "merchant view has no org_id"}),
        ],
    );
    assert_eq!(rows.len(), 2);
    assert_eq!(foreign, 1);
}

/// The two guarantees of the module docs, over random schedules: writes between pages (renames
/// of read and unread rows, creates, bulk creates, deletes), the clock standing still or moving
/// by a microsecond or a second — so ties of every size happen at the cursor.
#[test]
fn no_row_is_missed_under_random_concurrent_writes() {
    for seed in 0..200u64 {
        let mut rng = Rng(seed);
        let mut m = Model::new();
        let initial = 100 + rng.below(700) as usize;
        while m.rows.len() < initial {
            if rng.below(3) == 0 {
                m.clock += 1_000_000;
            }
            let n = if rng.below(10) == 0 {
                1 + rng.below(300) as usize
            } else {
                1
            };
            m.bulk(n);
        }
        let start_ids: BTreeSet<i64> = m.rows.keys().copied().collect();
        let mut deleted = BTreeSet::new();
        let limit = [200, 200, 50, 7][rng.below(4) as usize];
        let mut rng2 = Rng(seed ^ 0xABCD);
        // Writes go on for the first pages only: a writer that outpaces the reader forever
        // keeps any pass that promises its rows from ending.
        let mut writing_pages = 5 + rng.below(60);
        let p = pass(&mut m, limit, None, |m| {
            if writing_pages == 0 {
                return;
            }
            writing_pages -= 1;
            for _ in 0..rng2.below(6) {
                match rng2.below(10) {
                    0 => m.clock += 1_000_000,
                    1 => m.clock += 1,
                    2..=5 => {
                        let ids: Vec<i64> = m.rows.keys().copied().collect();
                        let id = ids[rng2.below(ids.len() as u64) as usize];
                        m.write(id);
                    }
                    6 | 7 => {
                        m.create();
                    }
                    8 => m.bulk(1 + rng2.below(250) as usize),
                    _ => {
                        let ids: Vec<i64> = m.rows.keys().copied().collect();
                        let id = ids[rng2.below(ids.len() as u64) as usize];
                        m.rows.remove(&id);
                        deleted.insert(id);
                    }
                }
            }
        });
        let got = ids(&p.rows);
        let throughout: BTreeSet<i64> = start_ids.difference(&deleted).copied().collect();
        let missed: Vec<&i64> = throughout.difference(&got).collect();
        assert!(missed.is_empty(), "seed {seed}: missed {missed:?}");

        // Every final version the pass did not return is at or after the watermark, so the next
        // incremental pass (inclusive) returns it.
        let w = p.watermark.expect("rows exist").timestamp_micros();
        let returned: BTreeMap<i64, &Value> = p
            .rows
            .iter()
            .map(|r| (r["id"].as_i64().expect("id"), r))
            .collect();
        for (id, (us, name)) in &m.rows {
            let fresh = returned.get(id).is_some_and(|r| r["name"] == name.as_str());
            assert!(
                fresh || *us >= w,
                "seed {seed}: row {id} ({name} at {us}) neither read nor at/after watermark {w}"
            );
        }
        // …and the catch-up pass from the watermark does return it.
        let catch_up = pass(&mut m, limit, p.watermark, |_| {});
        let mut merged: BTreeMap<i64, Value> = returned
            .into_iter()
            .map(|(id, r)| (id, r.clone()))
            .collect();
        for r in catch_up.rows {
            merged.insert(r["id"].as_i64().expect("id"), r);
        }
        for id in m.rows.keys() {
            assert_eq!(merged.get(id), Some(&m.json(*id)), "seed {seed}: row {id}");
        }
    }
}
