//! A small typed builder for QBO query statements (reference §3.2). Pure.
//!
//! ```text
//! SELECT * | COUNT(*) FROM <Entity> [WHERE <field> <op> <value> [AND …]] [ORDERBY <field> [ASC|DESC], …]
//!        [STARTPOSITION n] [MAXRESULTS n]
//! ```
//! - Strings are single-quoted with `\` and `'` backslash-escaped (`O'Brien \ Sons` →
//!   `'O\'Brien \\ Sons'`); booleans and integers are bare (`true`, `false`, `42`); instants are
//!   quoted ISO-8601 with their offset (`'2024-05-01T10:00:00-07:00'`, whole seconds: a `>=`
//!   bound rounded down returns a little more, never less).
//! - Entity and field names are checked (`Account`, `MetaData.LastUpdatedTime`: letters, digits,
//!   dots) so nothing a caller passes can change the statement's structure.
//! - [`Active`]: name lists answer only active rows unless the statement mentions `Active`;
//!   [`Active::Inactive`] adds `Active = false`, [`Active::Both`] `Active IN (true, false)`.
//! - Paging is the client's: [`Query::page_statement`] appends `STARTPOSITION`/`MAXRESULTS`
//!   (1-based, at most [`MAX_RESULTS`] per page); `query_all` orders by `Id` unless told otherwise
//!   so pages are stable while rows are added (new ids sort last).
//!
//! There is no OR, no projection and no JOIN in the language, so there are none here.

use std::fmt::Write as _;

use chrono::{DateTime, FixedOffset, Utc};

use crate::error::{Error, Result};

/// Largest `MAXRESULTS` QBO accepts.
pub const MAX_RESULTS: u32 = 1000;

/// Which rows of a name list a query returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Active {
    /// `Active = true` (what a name list answers anyway when `Active` is not mentioned).
    Only,
    /// `Active = false`: deactivated ("deleted") rows only.
    Inactive,
    /// `Active IN (true, false)`: every row.
    Both,
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// `ASC`
    Asc,
    /// `DESC`
    Desc,
}

/// A value in a condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A string, quoted and escaped.
    Str(String),
    /// `true`/`false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// An instant, quoted as ISO-8601 with its offset.
    Time(DateTime<FixedOffset>),
}

impl From<&str> for Literal {
    fn from(v: &str) -> Self {
        Literal::Str(v.to_owned())
    }
}

impl From<String> for Literal {
    fn from(v: String) -> Self {
        Literal::Str(v)
    }
}

impl From<&String> for Literal {
    fn from(v: &String) -> Self {
        Literal::Str(v.clone())
    }
}

impl From<bool> for Literal {
    fn from(v: bool) -> Self {
        Literal::Bool(v)
    }
}

impl From<i64> for Literal {
    fn from(v: i64) -> Self {
        Literal::Int(v)
    }
}

impl From<i32> for Literal {
    fn from(v: i32) -> Self {
        Literal::Int(v.into())
    }
}

impl From<u32> for Literal {
    fn from(v: u32) -> Self {
        Literal::Int(v.into())
    }
}

impl From<DateTime<Utc>> for Literal {
    fn from(v: DateTime<Utc>) -> Self {
        Literal::Time(v.fixed_offset())
    }
}

impl From<DateTime<FixedOffset>> for Literal {
    fn from(v: DateTime<FixedOffset>) -> Self {
        Literal::Time(v)
    }
}

/// Quotes a string literal: single quotes, `\` and `'` escaped with a backslash.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\\' || c == '\'' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

impl Literal {
    fn render(&self) -> String {
        match self {
            Literal::Str(s) => quote(s),
            Literal::Bool(b) => b.to_string(),
            Literal::Int(n) => n.to_string(),
            Literal::Time(t) => quote(&t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Lt,
    Gt,
    Le,
    Ge,
    Like,
    In,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Lt => "<",
            Op::Gt => ">",
            Op::Le => "<=",
            Op::Ge => ">=",
            Op::Like => "LIKE",
            Op::In => "IN",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Condition {
    field: String,
    op: Op,
    values: Vec<Literal>,
}

/// A query statement under construction. Builders take and return `self`; nothing is checked
/// until the statement is rendered ([`Query::statement`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    entity: String,
    count: bool,
    conditions: Vec<Condition>,
    active: Option<Active>,
    order: Vec<(String, Order)>,
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `Account`, `CompanyInfo`: letters, digits, `_`, starting with a letter.
pub(crate) fn check_entity(entity: &str) -> Result<()> {
    if is_name(entity) {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!(
            "{entity:?} is not a QBO entity name"
        )))
    }
}

fn check_field(field: &str) -> Result<()> {
    if field.split('.').all(is_name) {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!(
            "{field:?} is not a QBO property name"
        )))
    }
}

impl Query {
    /// `SELECT * FROM <entity>` (the name is case-sensitive: `Account`, `TaxCode`).
    pub fn select(entity: &str) -> Self {
        Self {
            entity: entity.to_owned(),
            count: false,
            conditions: Vec::new(),
            active: None,
            order: Vec::new(),
        }
    }

    /// `SELECT COUNT(*) FROM <entity>`.
    pub fn count(entity: &str) -> Self {
        Self {
            count: true,
            ..Self::select(entity)
        }
    }

    fn cond(mut self, field: &str, op: Op, values: Vec<Literal>) -> Self {
        self.conditions.push(Condition {
            field: field.to_owned(),
            op,
            values,
        });
        self
    }

    /// `AND <field> = <value>`.
    pub fn where_eq(self, field: &str, value: impl Into<Literal>) -> Self {
        self.cond(field, Op::Eq, vec![value.into()])
    }

    /// `AND <field> IN (<values>)` (at least one value, checked when rendered).
    pub fn where_in<V: Into<Literal>>(
        self,
        field: &str,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        let values = values.into_iter().map(Into::into).collect();
        self.cond(field, Op::In, values)
    }

    /// `AND <field> >= <value>`.
    pub fn where_gte(self, field: &str, value: impl Into<Literal>) -> Self {
        self.cond(field, Op::Ge, vec![value.into()])
    }

    /// `AND <field> <= <value>`.
    pub fn where_lte(self, field: &str, value: impl Into<Literal>) -> Self {
        self.cond(field, Op::Le, vec![value.into()])
    }

    /// `AND <field> > <value>`.
    pub fn where_gt(self, field: &str, value: impl Into<Literal>) -> Self {
        self.cond(field, Op::Gt, vec![value.into()])
    }

    /// `AND <field> < <value>`.
    pub fn where_lt(self, field: &str, value: impl Into<Literal>) -> Self {
        self.cond(field, Op::Lt, vec![value.into()])
    }

    /// `AND <field> LIKE '<pattern>'` (`%` is the only wildcard).
    pub fn where_like(self, field: &str, pattern: &str) -> Self {
        self.cond(field, Op::Like, vec![Literal::Str(pattern.to_owned())])
    }

    /// `AND MetaData.LastUpdatedTime >= <since>`: rows changed at or after `since`.
    pub fn changed_since(self, since: DateTime<Utc>) -> Self {
        self.where_gte("MetaData.LastUpdatedTime", since)
    }

    /// Which rows by `Active` (not set: QBO's default, active only for name lists).
    pub fn active(mut self, active: Active) -> Self {
        self.active = Some(active);
        self
    }

    /// `ORDERBY <field> <order>` (appended to earlier keys).
    pub fn order_by(mut self, field: &str, order: Order) -> Self {
        self.order.push((field.to_owned(), order));
        self
    }

    /// The entity queried.
    pub fn entity(&self) -> &str {
        &self.entity
    }

    /// Is this a `COUNT(*)`?
    pub fn is_count(&self) -> bool {
        self.count
    }

    pub(crate) fn has_order(&self) -> bool {
        !self.order.is_empty()
    }

    /// The statement without paging.
    pub fn statement(&self) -> Result<String> {
        check_entity(&self.entity)?;
        let mut out = format!(
            "SELECT {} FROM {}",
            if self.count { "COUNT(*)" } else { "*" },
            self.entity
        );
        let mut parts = Vec::new();
        for c in &self.conditions {
            check_field(&c.field)?;
            if self.active.is_some() && c.field.eq_ignore_ascii_case("Active") {
                return Err(Error::InvalidRequest(
                    "a condition on Active and active(…) together".into(),
                ));
            }
            let rendered = match (c.op, c.values.as_slice()) {
                (Op::In, []) => {
                    return Err(Error::InvalidRequest(format!(
                        "{} IN () has no values",
                        c.field
                    )));
                }
                (Op::In, values) => format!(
                    "{} IN ({})",
                    c.field,
                    values
                        .iter()
                        .map(Literal::render)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                (op, [one]) => format!("{} {} {}", c.field, op.as_str(), one.render()),
                _ => {
                    return Err(Error::InvalidRequest(format!(
                        "{} takes one value",
                        c.field
                    )));
                }
            };
            parts.push(rendered);
        }
        match self.active {
            None => {}
            Some(Active::Only) => parts.push("Active = true".into()),
            Some(Active::Inactive) => parts.push("Active = false".into()),
            Some(Active::Both) => parts.push("Active IN (true, false)".into()),
        }
        if !parts.is_empty() {
            let _ = write!(out, " WHERE {}", parts.join(" AND "));
        }
        if !self.count && !self.order.is_empty() {
            let mut keys = Vec::new();
            for (field, order) in &self.order {
                check_field(field)?;
                keys.push(format!(
                    "{field} {}",
                    if *order == Order::Asc { "ASC" } else { "DESC" }
                ));
            }
            let _ = write!(out, " ORDERBY {}", keys.join(", "));
        }
        Ok(out)
    }

    /// The statement of one page: rows `start` (1-based) to `start + max − 1`.
    pub fn page_statement(&self, start: u32, max: u32) -> Result<String> {
        if self.count {
            return Err(Error::InvalidRequest("a COUNT(*) has no pages".into()));
        }
        if start == 0 || !(1..=MAX_RESULTS).contains(&max) {
            return Err(Error::InvalidRequest(format!(
                "STARTPOSITION {start} MAXRESULTS {max}: start is 1-based, max 1–{MAX_RESULTS}"
            )));
        }
        Ok(format!(
            "{} STARTPOSITION {start} MAXRESULTS {max}",
            self.statement()?
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_with_backslash_escapes() {
        assert_eq!(quote("plain"), "'plain'");
        assert_eq!(quote(r"O'Brien \ Sons"), r"'O\'Brien \\ Sons'");
        assert_eq!(quote(r"\'"), r"'\\\''");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("Café \"quoted\" %"), "'Café \"quoted\" %'");
    }

    #[test]
    fn statements_render_conditions_active_and_order() {
        let q = Query::select("Vendor")
            .where_eq("DisplayName", "Books by Bessie")
            .where_in("Id", ["30", "31"])
            .active(Active::Both)
            .order_by("Id", Order::Asc);
        assert_eq!(
            q.statement().expect("valid"),
            "SELECT * FROM Vendor WHERE DisplayName = 'Books by Bessie' AND Id IN ('30', '31') AND Active IN (true, false) ORDERBY Id ASC"
        );
        assert_eq!(
            Query::select("Customer")
                .active(Active::Inactive)
                .statement()
                .expect("valid"),
            "SELECT * FROM Customer WHERE Active = false"
        );
        assert_eq!(
            Query::count("Account")
                .active(Active::Only)
                .order_by("Id", Order::Desc)
                .statement()
                .expect("valid"),
            "SELECT COUNT(*) FROM Account WHERE Active = true",
            "a count has no order"
        );
        assert_eq!(
            Query::select("Item")
                .where_eq("Taxable", true)
                .where_gte("Level", 2)
                .where_like("Name", "Con%")
                .page_statement(1001, 1000)
                .expect("valid"),
            "SELECT * FROM Item WHERE Taxable = true AND Level >= 2 AND Name LIKE 'Con%' STARTPOSITION 1001 MAXRESULTS 1000"
        );
    }

    #[test]
    fn instants_are_quoted_with_their_offset() {
        let t = DateTime::parse_from_rfc3339("2024-05-01T10:00:00.750-07:00").expect("instant");
        assert_eq!(
            Query::select("Account")
                .where_gte("MetaData.LastUpdatedTime", t)
                .statement()
                .expect("valid"),
            "SELECT * FROM Account WHERE MetaData.LastUpdatedTime >= '2024-05-01T10:00:00-07:00'"
        );
        let utc = t.with_timezone(&Utc);
        assert_eq!(
            Query::select("Account")
                .changed_since(utc)
                .statement()
                .expect("valid"),
            "SELECT * FROM Account WHERE MetaData.LastUpdatedTime >= '2024-05-01T17:00:00+00:00'"
        );
    }

    #[test]
    fn nothing_a_caller_passes_changes_the_structure() {
        for bad in [
            Query::select("Account; DROP"),
            Query::select("Account").where_eq("Name = 'x' OR Active", true),
            Query::select("Account").where_eq("Name..x", "y"),
            Query::select("Account").order_by("Id DESC, Name", Order::Asc),
            Query::select("Account").where_in("Id", Vec::<&str>::new()),
            Query::select("Account")
                .where_eq("active", false)
                .active(Active::Both),
            Query::select(""),
        ] {
            assert!(
                matches!(bad.statement(), Err(Error::InvalidRequest(_))),
                "{bad:?}"
            );
        }
        assert!(Query::count("Account").page_statement(1, 10).is_err());
        assert!(Query::select("Account").page_statement(0, 10).is_err());
        assert!(Query::select("Account").page_statement(1, 1001).is_err());
    }
}
