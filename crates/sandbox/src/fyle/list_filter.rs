//! Evaluation of parsed Fyle list filters and orders against rows. Pure.
//!
//! Semantics follow SQL as PostgREST does: a comparison with a `null` cell is false (use `is.null`),
//! booleans parse case-insensitively (`eq.False`), numbers compare numerically, strings that look
//! like timestamps compare as instants (so `updated_at=gte.2021-09-30T11:00:57.000Z` works), `like`
//! uses `%`/`*` for any run and `_` for one character, and an array cell is matched by `like` on its
//! JSON text (how `roles=like.%ADMIN%` behaves). A malformed operand (e.g. `is_enabled=eq.maybe`) is
//! a 400, as PostgreSQL would refuse the cast.
//!
//! Ordering: NULLS LAST for ascending and NULLS FIRST for descending (PostgreSQL defaults).
//! [`cmp_rows`] adds no tie-break of its own: rows equal on every requested key compare equal, and
//! the store decides their order (see `store.rs`: write order unless `id` is requested or the
//! sandbox is configured with an implicit id tie-break).

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value;

use super::list_query::{Column, Filter, Op, OrderKey};

/// A value read from a row for one column.
#[derive(Debug, Clone, Copy)]
pub enum Cell<'a> {
    /// Key absent (treated as SQL null).
    Missing,
    /// A JSON value.
    Json(&'a Value),
    /// A timestamp already decoded to microseconds since the epoch.
    Micros(i64),
}

/// Something filters and sorts can read columns from.
pub trait RowView {
    /// The cell of `column`.
    fn cell(&self, column: &Column) -> Cell<'_>;
}

/// Follows a column path through a JSON object.
pub fn lookup<'a>(obj: &'a serde_json::Map<String, Value>, column: &Column) -> Cell<'a> {
    let mut cur = match obj.get(column.root()) {
        Some(v) => v,
        None => return Cell::Missing,
    };
    for key in &column.path[1..] {
        cur = match cur.get(key) {
            Some(v) => v,
            None => return Cell::Missing,
        };
    }
    Cell::Json(cur)
}

/// Parses a timestamp operand or value: RFC 3339, naive `YYYY-MM-DDTHH:MM:SS[.f]` (UTC), or a date.
pub fn parse_instant(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        return Some(dt.timestamp_micros());
    }
    let s2 = s.trim_end_matches('Z');
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s2, fmt) {
            return Some(n.and_utc().timestamp_micros());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|n| n.and_utc().timestamp_micros())
}

/// Renders microseconds as Fyle renders timestamps (`2020-06-11T13:14:55.201598+00:00`).
pub fn format_micros(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6f+00:00")
        .to_string()
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "t" | "1" => Some(true),
        "false" | "f" | "0" => Some(false),
        _ => None,
    }
}

/// Compares a cell with an operand; `Ok(None)` for SQL null.
fn compare(cell: Cell<'_>, operand: &str) -> Result<Option<Ordering>, String> {
    let v = match cell {
        Cell::Missing => return Ok(None),
        Cell::Micros(us) => {
            let o =
                parse_instant(operand).ok_or_else(|| format!("invalid timestamp {operand:?}"))?;
            return Ok(Some(us.cmp(&o)));
        }
        Cell::Json(v) => v,
    };
    Ok(match v {
        Value::Null => None,
        Value::Bool(b) => {
            let o = parse_bool(operand).ok_or_else(|| format!("invalid boolean {operand:?}"))?;
            Some(b.cmp(&o))
        }
        Value::Number(n) => {
            let o: f64 = operand
                .trim()
                .parse()
                .map_err(|_| format!("invalid number {operand:?}"))?;
            n.as_f64().and_then(|x| x.partial_cmp(&o))
        }
        Value::String(s) => match (parse_instant(s), parse_instant(operand)) {
            (Some(a), Some(b)) => Some(a.cmp(&b)),
            _ => Some(s.as_str().cmp(operand)),
        },
        other => Some(other.to_string().as_str().cmp(operand)),
    })
}

fn cell_text(cell: Cell<'_>) -> Option<String> {
    match cell {
        Cell::Missing | Cell::Json(Value::Null) => None,
        Cell::Micros(us) => Some(format_micros(us)),
        Cell::Json(Value::String(s)) => Some(s.clone()),
        Cell::Json(v) => Some(v.to_string()),
    }
}

/// SQL LIKE with `%`/`*` = any run, `_` = any one character.
pub fn like(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    let (mut ti, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '_' || (p[pi] != '%' && p[pi] != '*' && p[pi] == t[ti])) {
            ti += 1;
            pi += 1;
        } else if pi < p.len() && (p[pi] == '%' || p[pi] == '*') {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '%' || *c == '*')
}

/// Does one filter hold for a cell?
pub fn eval(filter: &Filter, cell: Cell<'_>) -> Result<bool, String> {
    let ord = |op: &str| match (cell, filter.operand_instant) {
        (Cell::Micros(us), Some(at)) => Ok(Some(us.cmp(&at))),
        _ => compare(cell, op),
    };
    Ok(match filter.op {
        Op::Eq => ord(&filter.operand)? == Some(Ordering::Equal),
        Op::Neq => matches!(ord(&filter.operand)?, Some(o) if o != Ordering::Equal),
        Op::Gt => ord(&filter.operand)? == Some(Ordering::Greater),
        Op::Gte => matches!(
            ord(&filter.operand)?,
            Some(Ordering::Greater | Ordering::Equal)
        ),
        Op::Lt => ord(&filter.operand)? == Some(Ordering::Less),
        Op::Lte => matches!(
            ord(&filter.operand)?,
            Some(Ordering::Less | Ordering::Equal)
        ),
        Op::In | Op::NotIn => {
            if matches!(cell, Cell::Missing | Cell::Json(Value::Null)) {
                false
            } else {
                let mut found = false;
                for item in &filter.list {
                    if compare(cell, item)? == Some(Ordering::Equal) {
                        found = true;
                        break;
                    }
                }
                found == (filter.op == Op::In)
            }
        }
        Op::Is | Op::IsNot => {
            let holds = matches!(
                (filter.operand.as_str(), cell),
                ("null" | "unknown", Cell::Missing | Cell::Json(Value::Null))
                    | ("true", Cell::Json(Value::Bool(true)))
                    | ("false", Cell::Json(Value::Bool(false)))
            );
            holds == (filter.op == Op::Is)
        }
        Op::Like | Op::NotLike => match cell_text(cell) {
            None => false,
            Some(t) => like(&t, &filter.operand) == (filter.op == Op::Like),
        },
        Op::Ilike | Op::NotIlike => match cell_text(cell) {
            None => false,
            Some(t) => {
                like(&t.to_lowercase(), &filter.operand.to_lowercase()) == (filter.op == Op::Ilike)
            }
        },
    })
}

/// Do all filters hold for a row?
pub fn matches_all<R: RowView>(filters: &[Filter], row: &R) -> Result<bool, String> {
    for f in filters {
        if !eval(f, row.cell(&f.column))? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn is_null(c: Cell<'_>) -> bool {
    matches!(c, Cell::Missing | Cell::Json(Value::Null))
}

fn cmp_cells(a: Cell<'_>, b: Cell<'_>) -> Ordering {
    match (a, b) {
        (Cell::Micros(x), Cell::Micros(y)) => x.cmp(&y),
        (Cell::Json(Value::Number(x)), Cell::Json(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Cell::Json(Value::String(x)), Cell::Json(Value::String(y))) => x.cmp(y),
        (Cell::Json(Value::Bool(x)), Cell::Json(Value::Bool(y))) => x.cmp(y),
        (x, y) => cell_text(x).cmp(&cell_text(y)),
    }
}

/// Compares two rows by the order keys (then by `id` ascending).
pub fn cmp_rows<R: RowView>(order: &[OrderKey], a: &R, b: &R) -> Ordering {
    for key in order {
        let (x, y) = (a.cell(&key.column), b.cell(&key.column));
        let o = match (is_null(x), is_null(y)) {
            (true, true) => Ordering::Equal,
            (true, false) => {
                if key.nulls_first {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (false, true) => {
                if key.nulls_first {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            (false, false) => {
                let o = cmp_cells(x, y);
                if key.desc { o.reverse() } else { o }
            }
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};

    use super::*;
    use crate::fyle::list_query::{ListQuery, parse_list_query, parse_order};

    struct R(Map<String, Value>);
    impl RowView for R {
        fn cell(&self, column: &Column) -> Cell<'_> {
            lookup(&self.0, column)
        }
    }

    fn row(v: Value) -> R {
        match v {
            Value::Object(m) => R(m),
            _ => R(Map::new()),
        }
    }

    fn q(pairs: &[(&str, &str)]) -> Result<ListQuery, String> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        parse_list_query(&owned, 50)
    }

    fn holds(filter: (&str, &str), r: &R) -> bool {
        let parsed = q(&[filter]).expect("filter parses");
        matches_all(&parsed.filters, r).expect("filter evaluates")
    }

    #[test]
    fn every_operator() {
        let r = row(json!({
            "id": 7, "name": "Travel", "is_enabled": true, "code": null,
            "updated_at": "2024-05-01T09:00:00.000000+00:00",
            "user": {"email": "jane@example.com"}, "roles": ["FYLER", "ADMIN"]
        }));
        assert!(holds(("id", "eq.7"), &r));
        assert!(!holds(("id", "eq.8"), &r));
        assert!(holds(("name", "neq.Food"), &r));
        assert!(holds(("id", "in.(1,7)"), &r));
        assert!(holds(("id", "not_in.(123,456)"), &r));
        assert!(!holds(("id", "not_in.(7)"), &r));
        assert!(holds(("updated_at", "gte.2024-05-01T09:00:00.000Z"), &r));
        assert!(!holds(("updated_at", "gt.2024-05-01T09:00:00.000Z"), &r));
        assert!(holds(("updated_at", "lte.2024-05-01T09:00:00.000Z"), &r));
        assert!(holds(("updated_at", "lt.2024-05-02"), &r));
        assert!(holds(("code", "is.null"), &r));
        assert!(holds(("is_enabled", "is.true"), &r));
        assert!(!holds(("code", "is_not.null"), &r));
        assert!(holds(("name", "like.Tra%"), &r));
        assert!(!holds(("name", "like.tra%"), &r));
        assert!(holds(("name", "ilike.tra%"), &r));
        assert!(holds(("roles", "like.%ADMIN%"), &r));
        assert!(holds(("user->email", "eq.jane@example.com"), &r));
        assert!(holds(("is_enabled", "eq.True"), &r));
        assert!(!holds(("is_enabled", "eq.False"), &r));
    }

    #[test]
    fn null_cells_fail_comparisons_like_sql() {
        let r = row(json!({"id": 1, "code": null}));
        assert!(!holds(("code", "eq.x"), &r));
        assert!(!holds(("code", "neq.x"), &r));
        assert!(!holds(("code", "not_in.(x)"), &r));
    }

    #[test]
    fn malformed_operands_are_errors() {
        let r = row(json!({"is_enabled": true, "id": 1}));
        let p = q(&[("is_enabled", "eq.maybe")]).expect("parses");
        assert!(matches_all(&p.filters, &r).is_err());
        let p = q(&[("id", "eq.abc")]).expect("parses");
        assert!(matches_all(&p.filters, &r).is_err());
        assert!(q(&[("id", "approx.1")]).is_err());
        assert!(q(&[("id", "7")]).is_err());
        assert!(q(&[("id", "in.1,2")]).is_err());
    }

    #[test]
    fn like_wildcards() {
        assert!(like("abc", "%"));
        assert!(like("abc", "a_c"));
        assert!(like("abc", "*c"));
        assert!(!like("abc", "b%"));
        assert!(like("", "%"));
    }

    #[test]
    fn rows_sort_with_nulls_last_ascending_and_first_descending() {
        let rows = [
            row(json!({"id": 2, "code": "b"})),
            row(json!({"id": 1, "code": null})),
            row(json!({"id": 3, "code": "b"})),
            row(json!({"id": 4, "code": "a"})),
        ];
        let order = parse_order("code").expect("order");
        let mut idx: Vec<usize> = (0..rows.len()).collect();
        idx.sort_by(|a, b| cmp_rows(&order, &rows[*a], &rows[*b]));
        assert_eq!(idx, vec![3, 0, 2, 1], "a, b, b (stable), null last");
        let order = parse_order("code.desc").expect("order");
        idx.sort_by(|a, b| cmp_rows(&order, &rows[*a], &rows[*b]));
        assert_eq!(idx, vec![1, 0, 2, 3], "null first when descending");
    }
}
