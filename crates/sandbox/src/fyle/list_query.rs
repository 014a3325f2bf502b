//! Fyle list parameters: PostgREST-style `offset`, `limit`, `order` and `<column>=<op>.<operand>`
//! filters, parsed into a [`ListQuery`]; [`super::list_filter`] evaluates them against rows. Pure.
//!
//! Supported operators: `eq, neq, gt, gte, lt, lte, in, not_in, is, is_not, like, not_like, ilike,
//! not_ilike`. Columns are top-level keys or JSON paths (`user->email`, `user->>email`). `limit`
//! must be 1–200 (the resource decides the default), `offset` ≥ 0; `select` is accepted and ignored.
//! Ordering: `order=col[.asc|.desc][.nullsfirst|.nullslast],...`.
/// Largest page the API serves.
pub const MAX_LIMIT: usize = 200;

/// A column reference: a top-level key, optionally followed by JSON keys (`user->email`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Key path; never empty.
    pub path: Vec<String>,
}

impl Column {
    /// Parses `a`, `a->b`, `a->>b`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let path: Vec<String> = s
            .split("->")
            .map(|p| p.trim_start_matches('>').trim().to_owned())
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(format!("invalid column {s:?}"));
        }
        Ok(Self { path })
    }

    /// The top-level key.
    pub fn root(&self) -> &str {
        &self.path[0]
    }

    /// Is this exactly the top-level column `name`?
    pub fn is(&self, name: &str) -> bool {
        self.path.len() == 1 && self.path[0] == name
    }
}

/// Filter operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `<>`
    Neq,
    /// `>`
    Gt,
    /// `>=`
    Gte,
    /// `<`
    Lt,
    /// `<=`
    Lte,
    /// `IN (...)`
    In,
    /// `NOT IN (...)`
    NotIn,
    /// `IS null|true|false`
    Is,
    /// `IS NOT ...`
    IsNot,
    /// `LIKE`
    Like,
    /// `NOT LIKE`
    NotLike,
    /// `ILIKE`
    Ilike,
    /// `NOT ILIKE`
    NotIlike,
}

impl Op {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "eq" => Op::Eq,
            "neq" => Op::Neq,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            "in" => Op::In,
            "not_in" => Op::NotIn,
            "is" => Op::Is,
            "is_not" => Op::IsNot,
            "like" => Op::Like,
            "not_like" => Op::NotLike,
            "ilike" => Op::Ilike,
            "not_ilike" => Op::NotIlike,
            _ => return None,
        })
    }
}

/// One `<column>=<op>.<operand>` filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    /// Column.
    pub column: Column,
    /// Operator.
    pub op: Op,
    /// Operand text (for `in`/`not_in`: unused).
    pub operand: String,
    /// Items for `in`/`not_in`.
    pub list: Vec<String>,
    /// The operand as an instant (µs), when it is one: parsed once per query, not per row.
    pub operand_instant: Option<i64>,
}

/// One `order` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderKey {
    /// Column.
    pub column: Column,
    /// Descending?
    pub desc: bool,
    /// Nulls sort first?
    pub nulls_first: bool,
}

/// Parsed list parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    /// Rows to skip.
    pub offset: usize,
    /// Page size (already defaulted and bounded).
    pub limit: usize,
    /// Sort keys, possibly empty.
    pub order: Vec<OrderKey>,
    /// Filters, all of which must hold.
    pub filters: Vec<Filter>,
    /// Break ties on the requested order by `id` ascending (the sandbox option; real Fyle leaves
    /// ties unspecified). Set by the org, not by the request.
    pub implicit_id_tiebreak: bool,
}

/// Parses query-string pairs. `default_limit` applies when `limit` is absent.
pub fn parse_list_query(
    pairs: &[(String, String)],
    default_limit: usize,
) -> Result<ListQuery, String> {
    let mut q = ListQuery {
        offset: 0,
        limit: default_limit,
        order: Vec::new(),
        filters: Vec::new(),
        implicit_id_tiebreak: false,
    };
    for (key, value) in pairs {
        match key.as_str() {
            "offset" => {
                q.offset = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("offset must be a non-negative integer, got {value:?}"))?;
            }
            "limit" => {
                let limit: usize = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("limit must be a positive integer, got {value:?}"))?;
                if !(1..=MAX_LIMIT).contains(&limit) {
                    return Err(format!(
                        "limit must be between 1 and {MAX_LIMIT}, got {limit}"
                    ));
                }
                q.limit = limit;
            }
            "order" => q.order = parse_order(value)?,
            // PostgREST's projection parameter; every endpoint here returns whole objects.
            "select" => {}
            _ => q.filters.push(parse_filter(key, value)?),
        }
    }
    Ok(q)
}

/// Parses `updated_at.desc,id` into order keys.
pub fn parse_order(s: &str) -> Result<Vec<OrderKey>, String> {
    let mut keys = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let mut pieces = part.split('.');
        let column = Column::parse(pieces.next().unwrap_or_default())?;
        let mut desc = false;
        let mut nulls = None;
        for modifier in pieces {
            match modifier.to_ascii_lowercase().as_str() {
                "asc" => desc = false,
                "desc" => desc = true,
                "nullsfirst" => nulls = Some(true),
                "nullslast" => nulls = Some(false),
                other => return Err(format!("invalid order modifier {other:?} in {part:?}")),
            }
        }
        keys.push(OrderKey {
            column,
            desc,
            nulls_first: nulls.unwrap_or(desc),
        });
    }
    Ok(keys)
}

fn parse_filter(key: &str, value: &str) -> Result<Filter, String> {
    let column = Column::parse(key)?;
    let (op_text, operand) = value
        .split_once('.')
        .ok_or_else(|| format!("filter {key}={value:?} must look like <operator>.<value>"))?;
    let op =
        Op::parse(op_text).ok_or_else(|| format!("unsupported operator {op_text:?} for {key}"))?;
    let mut f = Filter {
        column,
        op,
        operand: operand.to_owned(),
        list: Vec::new(),
        operand_instant: super::list_filter::parse_instant(operand),
    };
    match op {
        Op::In | Op::NotIn => f.list = parse_list(operand)?,
        Op::Is | Op::IsNot => {
            let t = operand.to_ascii_lowercase();
            if !matches!(t.as_str(), "null" | "true" | "false" | "unknown") {
                return Err(format!(
                    "is/is_not takes null, true, false or unknown, got {operand:?}"
                ));
            }
            f.operand = t;
        }
        _ => {}
    }
    Ok(f)
}

/// Parses `(a,b,"c,d")`.
fn parse_list(s: &str) -> Result<Vec<String>, String> {
    let inner = s
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("list operand must be parenthesised, got {s:?}"))?;
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => cur.extend(chars.next()),
            ',' if !quoted => items.push(std::mem::take(&mut cur).trim().to_owned()),
            _ => cur.push(c),
        }
    }
    if quoted {
        return Err(format!("unterminated quote in {s:?}"));
    }
    if !inner.trim().is_empty() {
        items.push(cur.trim().to_owned());
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<ListQuery, String> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        parse_list_query(&owned, 50)
    }

    #[test]
    fn defaults_and_limits() {
        let p = q(&[]).expect("empty query parses");
        assert_eq!((p.offset, p.limit), (0, 50));
        assert!(q(&[("limit", "201")]).is_err());
        assert!(q(&[("limit", "0")]).is_err());
        assert!(q(&[("offset", "-1")]).is_err());
        assert_eq!(q(&[("limit", "200")]).expect("200 is allowed").limit, 200);
    }

    #[test]
    fn order_parses_multi_column_and_desc() {
        let keys = parse_order("updated_at.desc,id").expect("order parses");
        assert_eq!(keys.len(), 2);
        assert!(keys[0].desc && keys[0].nulls_first);
        assert!(!keys[1].desc && keys[1].column.is("id"));
        assert!(parse_order("name.sideways").is_err());
    }

    #[test]
    fn list_operands_accept_quotes() {
        assert_eq!(
            parse_list(r#"(a,"b,c", d)"#).expect("list"),
            vec!["a", "b,c", "d"]
        );
        assert!(parse_list("()").expect("empty list").is_empty());
    }
}
