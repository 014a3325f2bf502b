//! Storage of one QBO entity table and query execution over it.
//!
//! Rows are kept in a `BTreeMap` by numeric `Id` (the default result order) with a second index on
//! `(LastUpdatedTime, Id)`. Each row mirrors `Id`, `Active` and the `MetaData` times as plain
//! numbers, so the implicit `Active = true` filter and `LastUpdatedTime` comparisons never touch
//! JSON. A page walks the index in order, skips `STARTPOSITION - 1` matches and stops after
//! `MAXRESULTS`; only `count(*)` and uncommon `ORDERBY`s visit every row.
//!
//! Comparison rules **(inferred where Intuit does not say)**: string comparisons and `LIKE` are
//! case-insensitive; `LIKE` knows only `%`; a `*Ref` property compares by its `value`; timestamps
//! without an offset are read in the company's time zone; a missing property matches nothing.

use std::{
    cmp::Ordering,
    collections::{BTreeMap, BTreeSet},
};

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use serde_json::{Map, Value};

use super::{
    query_parser::{CmpOp, Literal},
    query_validate::{FieldRef, Validated},
};

/// One stored entity.
#[derive(Debug, Clone)]
pub struct Entity {
    /// Numeric `Id`.
    pub id: u64,
    /// `Active`.
    pub active: bool,
    /// `MetaData.LastUpdatedTime`, epoch seconds.
    pub updated: i64,
    /// `MetaData.CreateTime`, epoch seconds.
    pub created: i64,
    /// The object as served.
    pub json: Map<String, Value>,
}

/// One entity type's rows.
#[derive(Debug)]
pub struct Table {
    rows: BTreeMap<u64, Entity>,
    by_updated: BTreeSet<(i64, u64)>,
    /// Next `Id` to assign.
    pub next_id: u64,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            rows: BTreeMap::new(),
            by_updated: BTreeSet::new(),
            next_id: 1,
        }
    }
}

impl Table {
    /// A row.
    pub fn get(&self, id: u64) -> Option<&Entity> {
        self.rows.get(&id)
    }

    /// Rows in `Id` order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Entity> {
        self.rows.values()
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Inserts or replaces; returns the previous version.
    pub fn put(&mut self, e: Entity) -> Option<Entity> {
        let old = self.remove(e.id);
        self.next_id = self.next_id.max(e.id + 1);
        self.by_updated.insert((e.updated, e.id));
        self.rows.insert(e.id, e);
        old
    }

    /// Removes a row.
    pub fn remove(&mut self, id: u64) -> Option<Entity> {
        let e = self.rows.remove(&id)?;
        self.by_updated.remove(&(e.updated, e.id));
        Some(e)
    }

    /// Rows changed at or after `since` (epoch seconds), oldest first.
    pub fn changed_since(&self, since: i64) -> impl Iterator<Item = &Entity> {
        self.by_updated
            .range((since, 0)..)
            .filter_map(|(_, id)| self.rows.get(id))
    }

    /// Runs a validated query: the count, or the page.
    pub fn query(&self, v: &Validated, tz: FixedOffset) -> Result<QueryOutcome<'_>, String> {
        let preds = compile(v, tz)?;
        let keep = |e: &&Entity| (!v.active_only || e.active) && preds.iter().all(|p| p.holds(e));
        if v.count {
            return Ok(QueryOutcome::Count(self.rows.values().filter(keep).count()));
        }
        let skip = usize::try_from(v.start_position.saturating_sub(1)).unwrap_or(usize::MAX);
        let take = usize::try_from(v.max_results).unwrap_or(usize::MAX);
        let rows: Vec<&Entity> = match v.order.as_slice() {
            [] | [(FieldRef::Id, false)] => self
                .rows
                .values()
                .filter(keep)
                .skip(skip)
                .take(take)
                .collect(),
            [(FieldRef::Id, true)] => self
                .rows
                .values()
                .rev()
                .filter(keep)
                .skip(skip)
                .take(take)
                .collect(),
            [(FieldRef::LastUpdated, desc)] => {
                let ids = self.by_updated.iter().map(|(_, id)| id);
                let lookup = |id: &u64| self.rows.get(id);
                if *desc {
                    ids.rev()
                        .filter_map(lookup)
                        .filter(keep)
                        .skip(skip)
                        .take(take)
                        .collect()
                } else {
                    ids.filter_map(lookup)
                        .filter(keep)
                        .skip(skip)
                        .take(take)
                        .collect()
                }
            }
            order => {
                let mut all: Vec<&Entity> = self.rows.values().filter(keep).collect();
                all.sort_by(|a, b| cmp_entities(order, a, b));
                all.into_iter().skip(skip).take(take).collect()
            }
        };
        Ok(QueryOutcome::Page(rows))
    }
}

/// Result of a query.
#[derive(Debug)]
pub enum QueryOutcome<'a> {
    /// `count(*)`.
    Count(usize),
    /// One page of rows.
    Page(Vec<&'a Entity>),
}

/// Parses a QBO timestamp literal; naive values are in `tz`. Epoch seconds.
pub fn parse_time(s: &str, tz: FixedOffset) -> Option<i64> {
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.timestamp());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z"] {
        if let Ok(dt) = DateTime::parse_from_str(s, fmt) {
            return Some(dt.timestamp());
        }
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })?;
    tz.from_local_datetime(&naive)
        .single()
        .map(|d| d.timestamp())
}

/// Renders epoch seconds as QBO does (`2019-08-02T01:25:18-07:00`).
pub fn format_time(secs: i64, tz: FixedOffset) -> String {
    DateTime::<Utc>::from_timestamp(secs, 0)
        .unwrap_or_default()
        .with_timezone(&tz)
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// The company time zone.
pub fn tz(offset_minutes: i32) -> FixedOffset {
    FixedOffset::east_opt(offset_minutes * 60).unwrap_or_else(|| Utc.fix())
}

#[derive(Debug)]
enum Operand {
    Id(Option<u64>),
    Bool(bool),
    Time(i64),
    Lit(Literal),
}

#[derive(Debug)]
struct Pred {
    field: FieldRef,
    op: CmpOp,
    operands: Vec<Operand>,
}

fn compile(v: &Validated, tz: FixedOffset) -> Result<Vec<Pred>, String> {
    let mut out = Vec::new();
    for (field, op, values) in &v.conditions {
        let mut operands = Vec::new();
        for lit in values {
            operands.push(match (field, lit) {
                (FieldRef::Id, Literal::Str(s)) => Operand::Id(s.trim().parse().ok()),
                (FieldRef::Id, Literal::Num(n)) => Operand::Id(Some(*n as u64)),
                (FieldRef::Active, Literal::Bool(b)) => Operand::Bool(*b),
                (FieldRef::Active, Literal::Str(s)) => {
                    Operand::Bool(s.eq_ignore_ascii_case("true"))
                }
                (FieldRef::LastUpdated | FieldRef::CreateTime, Literal::Str(s)) => Operand::Time(
                    parse_time(s, tz).ok_or_else(|| format!("invalid date/time '{s}'"))?,
                ),
                (FieldRef::LastUpdated | FieldRef::CreateTime, _) => {
                    return Err("date/time values must be quoted".into());
                }
                (_, lit) => Operand::Lit(lit.clone()),
            });
        }
        out.push(Pred {
            field: field.clone(),
            op: *op,
            operands,
        });
    }
    Ok(out)
}

fn ord_holds(op: CmpOp, o: Ordering) -> bool {
    match op {
        CmpOp::Eq | CmpOp::In => o == Ordering::Equal,
        CmpOp::Lt => o == Ordering::Less,
        CmpOp::Gt => o == Ordering::Greater,
        CmpOp::Le => o != Ordering::Greater,
        CmpOp::Ge => o != Ordering::Less,
        CmpOp::Like => false,
    }
}

/// `LIKE` with `%` as the only wildcard, case-insensitive.
pub fn like_ci(text: &str, pattern: &str) -> bool {
    let text = text.to_lowercase();
    let pattern = pattern.to_lowercase();
    let parts: Vec<&str> = pattern.split('%').collect();
    if parts.len() == 1 {
        return text == pattern;
    }
    let mut rest = text.as_str();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(pos) => rest = &rest[pos + part.len()..],
                None => return false,
            }
        }
    }
    true
}

fn json_at<'a>(e: &'a Entity, path: &[String]) -> Option<&'a Value> {
    let mut cur = e.json.get(&path[0])?;
    for k in &path[1..] {
        cur = cur.get(k)?;
    }
    // A reference (`ParentRef`) compares by its value.
    match cur {
        Value::Object(m) if path.len() == 1 => m.get("value").or(Some(cur)),
        _ => Some(cur),
    }
}

fn cmp_json_lit(v: &Value, lit: &Literal) -> Option<Ordering> {
    match (v, lit) {
        (Value::String(s), Literal::Str(l)) => Some(s.to_lowercase().cmp(&l.to_lowercase())),
        (Value::String(s), Literal::Num(n)) => s.parse::<f64>().ok().and_then(|x| x.partial_cmp(n)),
        (Value::Number(x), Literal::Num(n)) => x.as_f64().and_then(|x| x.partial_cmp(n)),
        (Value::Number(x), Literal::Str(s)) => x
            .as_f64()
            .zip(s.parse::<f64>().ok())
            .and_then(|(a, b)| a.partial_cmp(&b)),
        (Value::Bool(b), Literal::Bool(l)) => Some(b.cmp(l)),
        (Value::Bool(b), Literal::Str(s)) => Some(b.to_string().cmp(&s.to_lowercase())),
        _ => None,
    }
}

impl Pred {
    fn holds(&self, e: &Entity) -> bool {
        let any = |f: &dyn Fn(&Operand) -> bool| self.operands.iter().any(f);
        match &self.field {
            FieldRef::Id => {
                any(&|o| matches!(o, Operand::Id(Some(x)) if ord_holds(self.op, e.id.cmp(x))))
            }
            FieldRef::Active => {
                any(&|o| matches!(o, Operand::Bool(b) if ord_holds(self.op, e.active.cmp(b))))
            }
            FieldRef::LastUpdated => {
                any(&|o| matches!(o, Operand::Time(t) if ord_holds(self.op, e.updated.cmp(t))))
            }
            FieldRef::CreateTime => {
                any(&|o| matches!(o, Operand::Time(t) if ord_holds(self.op, e.created.cmp(t))))
            }
            FieldRef::Path(path) => {
                let Some(v) = json_at(e, path) else {
                    return false;
                };
                any(&|o| match (o, self.op) {
                    (Operand::Lit(Literal::Str(p)), CmpOp::Like) => {
                        v.as_str().is_some_and(|s| like_ci(s, p))
                    }
                    (Operand::Lit(l), op) => {
                        cmp_json_lit(v, l).is_some_and(|ord| ord_holds(op, ord))
                    }
                    _ => false,
                })
            }
        }
    }
}

fn sort_key(e: &Entity, f: &FieldRef) -> (Option<i128>, Option<String>) {
    match f {
        FieldRef::Id => (Some(i128::from(e.id)), None),
        FieldRef::Active => (Some(i128::from(e.active)), None),
        FieldRef::LastUpdated => (Some(i128::from(e.updated)), None),
        FieldRef::CreateTime => (Some(i128::from(e.created)), None),
        FieldRef::Path(p) => match json_at(e, p) {
            Some(Value::Number(n)) => (n.as_f64().map(|x| (x * 1000.0) as i128), None),
            Some(Value::String(s)) => (None, Some(s.to_lowercase())),
            Some(Value::Bool(b)) => (Some(i128::from(*b)), None),
            _ => (None, None),
        },
    }
}

fn cmp_entities(order: &[(FieldRef, bool)], a: &Entity, b: &Entity) -> Ordering {
    for (f, desc) in order {
        let o = sort_key(a, f).cmp(&sort_key(b, f));
        let o = if *desc { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.id.cmp(&b.id)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::qbo::{query_parser::parse, query_validate::validate};

    fn table() -> Table {
        let mut t = Table::default();
        for (id, name, active, updated) in [
            (1, "Advertising", true, 100),
            (2, "Automobile", true, 300),
            (3, "Old Travel (deleted)", false, 200),
            (4, "Fuel", true, 50),
        ] {
            let json = json!({"Id": id.to_string(), "Name": name, "Active": active, "ParentRef": {"value": "2"}});
            t.put(Entity {
                id,
                active,
                updated,
                created: 0,
                json: json.as_object().cloned().unwrap_or_default(),
            });
        }
        t
    }

    fn ids(t: &Table, q: &str) -> Vec<u64> {
        let v = validate(&parse(q).expect("parses")).expect("valid");
        match t.query(&v, tz(-420)).expect("runs") {
            QueryOutcome::Page(rows) => rows.iter().map(|e| e.id).collect(),
            QueryOutcome::Count(n) => vec![n as u64 * 1000],
        }
    }

    #[test]
    fn active_only_unless_asked() {
        let t = table();
        assert_eq!(ids(&t, "select * from Account"), vec![1, 2, 4]);
        assert_eq!(
            ids(&t, "select * from Account where Active = false"),
            vec![3]
        );
        assert_eq!(
            ids(&t, "select * from Account where Active IN (true, false)"),
            vec![1, 2, 3, 4]
        );
        assert_eq!(ids(&t, "select count(*) from Account"), vec![3000]);
    }

    #[test]
    fn paging_ordering_and_operators() {
        let t = table();
        assert_eq!(
            ids(&t, "select * from Account startposition 2 maxresults 1"),
            vec![2]
        );
        assert_eq!(
            ids(&t, "select * from Account startposition 9"),
            Vec::<u64>::new()
        );
        assert_eq!(
            ids(
                &t,
                "select * from Account orderby Metadata.LastUpdatedTime desc"
            ),
            vec![2, 1, 4]
        );
        assert_eq!(ids(&t, "select * from Account orderby Name"), vec![1, 2, 4]);
        assert_eq!(
            ids(&t, "select * from Account where Name like '%mobile'"),
            vec![2]
        );
        assert_eq!(
            ids(&t, "select * from Account where name = 'FUEL'"),
            vec![4]
        );
        assert_eq!(
            ids(&t, "select * from Account where Id IN ('1', '4')"),
            vec![1, 4]
        );
        assert_eq!(
            ids(&t, "select * from Account where Id > '1' and Id <= '4'"),
            vec![2, 4]
        );
        assert_eq!(
            ids(&t, "select * from Account where ParentRef = '2'"),
            vec![1, 2, 4]
        );
    }

    #[test]
    fn last_updated_comparisons_use_the_company_zone_for_naive_times() {
        let zone = tz(-420);
        let at = parse_time("1970-01-01T00:00:00", zone).expect("parses");
        assert_eq!(at, 7 * 3600);
        assert_eq!(parse_time("1970-01-01T00:00:00-00:00", zone), Some(0));
        assert_eq!(parse_time("1970-01-01T00:00:00Z", zone), Some(0));
        assert_eq!(format_time(0, zone), "1969-12-31T17:00:00-07:00");
    }

    #[test]
    fn like_only_knows_percent() {
        assert!(like_ci("Books by Bessie", "%by%"));
        assert!(like_ci("Books", "b%"));
        assert!(!like_ci("Books", "b_oks"));
        assert!(like_ci("abc", "abc"));
    }
}
