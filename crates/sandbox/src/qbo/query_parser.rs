//! The QBO query language (reference §3.2): a tokenizer and a recursive-descent parser producing a
//! [`Query`] AST, plus [`validate`] which resolves the entity and property names. Pure functions.
//!
//! ```text
//! query     := SELECT ( '*' | COUNT '(' '*' ')' ) FROM entity
//!              [ WHERE cond { AND cond } ]
//!              [ ORDERBY field [ASC|DESC] { ',' field [ASC|DESC] } ]
//!              { STARTPOSITION int | MAXRESULTS int }        -- each at most once, any order
//! cond      := field ( '=' | '<' | '>' | '<=' | '>=' ) literal
//!            | field IN '(' literal { ',' literal } ')'
//!            | field LIKE string
//! field     := ident { '.' ident }                            -- e.g. Metadata.LastUpdatedTime
//! literal   := 'string' (backslash escapes) | number | true | false
//! ```
//! Keywords are case-insensitive; the entity name is case-sensitive; property names are matched
//! case-insensitively (`Metadata` finds `MetaData`). There is no OR, no projection, no JOIN.
//! `MAXRESULTS` must be 1–1000 and `STARTPOSITION` ≥ 1. Syntax errors become a 400
//! `ValidationFault` code 4000, semantic ones (unknown entity or property) code 4001.

use super::entity::EntityType;

/// A token of the query language.
#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    /// Identifier or keyword (dots allowed inside: `MetaData.LastUpdatedTime`).
    Word(String),
    /// Quoted string, unescaped.
    Str(String),
    /// Number literal (kept as text).
    Num(String),
    /// `*`
    Star,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `,`
    Comma,
    /// `=`, `<`, `>`, `<=`, `>=`, `!=`
    Cmp(&'static str),
}

/// A parse failure with its 1-based column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// What went wrong.
    pub message: String,
    /// Column (1-based) of the offending token.
    pub column: usize,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at line 1, column {}.", self.message, self.column)
    }
}

/// Splits a statement into tokens with their columns.
pub fn tokenize(input: &str) -> Result<Vec<(Token, usize)>, ParseError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        match c {
            c if c.is_whitespace() => i += 1,
            '*' => {
                out.push((Token::Star, col));
                i += 1;
            }
            '(' => {
                out.push((Token::LParen, col));
                i += 1;
            }
            ')' => {
                out.push((Token::RParen, col));
                i += 1;
            }
            ',' => {
                out.push((Token::Comma, col));
                i += 1;
            }
            '=' => {
                out.push((Token::Cmp("="), col));
                i += 1;
            }
            '<' | '>' | '!' => {
                let two = chars.get(i + 1) == Some(&'=');
                let op = match (c, two) {
                    ('<', true) => "<=",
                    ('>', true) => ">=",
                    ('!', true) => "!=",
                    ('<', false) => "<",
                    ('>', false) => ">",
                    _ => {
                        return Err(ParseError {
                            message: "Encountered \"!\"".into(),
                            column: col,
                        });
                    }
                };
                out.push((Token::Cmp(op), col));
                i += if two { 2 } else { 1 };
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(ParseError {
                                message: "Lexical error: unterminated string".into(),
                                column: col,
                            });
                        }
                        Some('\\') => {
                            if let Some(n) = chars.get(i + 1) {
                                s.push(*n);
                            }
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            s.push(*ch);
                            i += 1;
                        }
                    }
                }
                out.push((Token::Str(s), col));
            }
            c if c.is_ascii_digit()
                || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                let start = i;
                i += 1;
                while chars
                    .get(i)
                    .is_some_and(|ch| ch.is_ascii_digit() || *ch == '.')
                {
                    i += 1;
                }
                out.push((Token::Num(chars[start..i].iter().collect()), col));
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while chars
                    .get(i)
                    .is_some_and(|ch| ch.is_alphanumeric() || *ch == '_' || *ch == '.')
                {
                    i += 1;
                }
                out.push((Token::Word(chars[start..i].iter().collect()), col));
            }
            other => {
                return Err(ParseError {
                    message: format!("Lexical error: encountered \"{other}\""),
                    column: col,
                });
            }
        }
    }
    Ok(out)
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// Quoted string.
    Str(String),
    /// Number.
    Num(f64),
    /// `true`/`false`.
    Bool(bool),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `<`
    Lt,
    /// `>`
    Gt,
    /// `<=`
    Le,
    /// `>=`
    Ge,
    /// `IN (...)`
    In,
    /// `LIKE '...'`
    Like,
}

/// One `WHERE` condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// Property path as written (`Metadata.LastUpdatedTime`).
    pub field: String,
    /// Operator.
    pub op: CmpOp,
    /// Operand(s): one for every operator except `IN`.
    pub values: Vec<Literal>,
}

/// A parsed statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// `select count(*)`.
    pub count: bool,
    /// Entity name as written.
    pub entity: String,
    /// Conditions joined by AND.
    pub conditions: Vec<Condition>,
    /// Order keys: property path and descending flag.
    pub order: Vec<(String, bool)>,
    /// `STARTPOSITION` (1-based).
    pub start_position: Option<u64>,
    /// `MAXRESULTS`.
    pub max_results: Option<u64>,
}

struct Parser {
    tokens: Vec<(Token, usize)>,
    pos: usize,
    end_col: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|t| &t.0)
    }

    fn col(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end_col, |t| t.1)
    }

    fn err<T>(&self, expected: &str) -> Result<T, ParseError> {
        let found = match self.peek() {
            None => "<EOF>".to_owned(),
            Some(Token::Word(w)) | Some(Token::Num(w)) => w.clone(),
            Some(Token::Str(s)) => format!("'{s}'"),
            Some(Token::Star) => "*".into(),
            Some(Token::LParen) => "(".into(),
            Some(Token::RParen) => ")".into(),
            Some(Token::Comma) => ",".into(),
            Some(Token::Cmp(op)) => (*op).into(),
        };
        Err(ParseError {
            message: format!("Encountered \"{found}\", expected {expected}"),
            column: self.col(),
        })
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).map(|t| t.0.clone());
        self.pos += 1;
        t
    }

    fn is_keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn keyword(&mut self, kw: &str) -> Result<(), ParseError> {
        if self.is_keyword(kw) {
            self.pos += 1;
            Ok(())
        } else {
            self.err(&format!("\"{kw}\""))
        }
    }

    fn expect(&mut self, t: Token, what: &str) -> Result<(), ParseError> {
        if self.peek() == Some(&t) {
            self.pos += 1;
            Ok(())
        } else {
            self.err(what)
        }
    }

    fn word(&mut self, what: &str) -> Result<String, ParseError> {
        match self.peek() {
            Some(Token::Word(w)) if !is_reserved(w) => {
                let w = w.clone();
                self.pos += 1;
                Ok(w)
            }
            _ => self.err(what),
        }
    }

    fn literal(&mut self) -> Result<Literal, ParseError> {
        match self.peek().cloned() {
            Some(Token::Str(s)) => {
                self.pos += 1;
                Ok(Literal::Str(s))
            }
            Some(Token::Num(n)) => match n.parse::<f64>() {
                Ok(x) => {
                    self.pos += 1;
                    Ok(Literal::Num(x))
                }
                Err(_) => self.err("a number"),
            },
            Some(Token::Word(w))
                if w.eq_ignore_ascii_case("true") || w.eq_ignore_ascii_case("false") =>
            {
                self.pos += 1;
                Ok(Literal::Bool(w.eq_ignore_ascii_case("true")))
            }
            _ => self.err("a literal"),
        }
    }

    fn integer(&mut self, what: &str) -> Result<u64, ParseError> {
        match self.peek().cloned() {
            Some(Token::Num(n)) => match n.parse::<u64>() {
                Ok(x) => {
                    self.pos += 1;
                    Ok(x)
                }
                Err(_) => self.err(what),
            },
            _ => self.err(what),
        }
    }
}

fn is_reserved(w: &str) -> bool {
    [
        "select",
        "from",
        "where",
        "and",
        "or",
        "orderby",
        "order",
        "startposition",
        "maxresults",
        "in",
        "like",
        "asc",
        "desc",
    ]
    .iter()
    .any(|k| w.eq_ignore_ascii_case(k))
}

/// Parses a statement.
pub fn parse(input: &str) -> Result<Query, ParseError> {
    let tokens = tokenize(input)?;
    let mut p = Parser {
        tokens,
        pos: 0,
        end_col: input.chars().count() + 1,
    };
    p.keyword("select")?;
    let count = if p.peek() == Some(&Token::Star) {
        p.pos += 1;
        false
    } else if p.is_keyword("count") {
        p.pos += 1;
        p.expect(Token::LParen, "\"(\"")?;
        p.expect(Token::Star, "\"*\"")?;
        p.expect(Token::RParen, "\")\"")?;
        true
    } else {
        return p.err("\"*\" or \"count(*)\"");
    };
    p.keyword("from")?;
    let entity = p.word("an entity name")?;
    let mut q = Query {
        count,
        entity,
        conditions: Vec::new(),
        order: Vec::new(),
        start_position: None,
        max_results: None,
    };
    if p.is_keyword("where") {
        p.pos += 1;
        loop {
            let field = p.word("a property name")?;
            let (op, values) = if p.is_keyword("in") {
                p.pos += 1;
                p.expect(Token::LParen, "\"(\"")?;
                let mut values = vec![p.literal()?];
                while p.peek() == Some(&Token::Comma) {
                    p.pos += 1;
                    values.push(p.literal()?);
                }
                p.expect(Token::RParen, "\")\"")?;
                (CmpOp::In, values)
            } else if p.is_keyword("like") {
                p.pos += 1;
                match p.literal()? {
                    s @ Literal::Str(_) => (CmpOp::Like, vec![s]),
                    _ => {
                        p.pos -= 1;
                        return p.err("a quoted pattern");
                    }
                }
            } else {
                let op = match p.peek() {
                    Some(Token::Cmp("=")) => CmpOp::Eq,
                    Some(Token::Cmp("<")) => CmpOp::Lt,
                    Some(Token::Cmp(">")) => CmpOp::Gt,
                    Some(Token::Cmp("<=")) => CmpOp::Le,
                    Some(Token::Cmp(">=")) => CmpOp::Ge,
                    _ => return p.err("an operator (=, <, >, <=, >=, IN, LIKE)"),
                };
                p.pos += 1;
                (op, vec![p.literal()?])
            };
            q.conditions.push(Condition { field, op, values });
            if p.is_keyword("and") {
                p.pos += 1;
            } else {
                break;
            }
        }
    }
    if p.is_keyword("orderby") || p.is_keyword("order") {
        if p.is_keyword("order") {
            p.pos += 1;
            p.keyword("by")?;
        } else {
            p.pos += 1;
        }
        loop {
            let field = p.word("a property name")?;
            let desc = if p.is_keyword("desc") {
                p.pos += 1;
                true
            } else {
                if p.is_keyword("asc") {
                    p.pos += 1;
                }
                false
            };
            q.order.push((field, desc));
            if p.peek() == Some(&Token::Comma) {
                p.pos += 1;
            } else {
                break;
            }
        }
    }
    loop {
        if p.is_keyword("startposition") && q.start_position.is_none() {
            p.pos += 1;
            q.start_position = Some(p.integer("an integer")?);
        } else if p.is_keyword("maxresults") && q.max_results.is_none() {
            p.pos += 1;
            q.max_results = Some(p.integer("an integer")?);
        } else {
            break;
        }
    }
    if p.peek().is_some() {
        return p.err("<EOF>");
    }
    let _ = p.next();
    Ok(q)
}

/// A property reference resolved against an entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldRef {
    /// `Id` (numeric compare).
    Id,
    /// `Active`.
    Active,
    /// `MetaData.LastUpdatedTime`.
    LastUpdated,
    /// `MetaData.CreateTime`.
    CreateTime,
    /// Any other path, canonical spelling of the first segment.
    Path(Vec<String>),
}

/// A statement checked against the entity model.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// Entity.
    pub entity: EntityType,
    /// `count(*)`.
    pub count: bool,
    /// Conditions with resolved fields.
    pub conditions: Vec<(FieldRef, CmpOp, Vec<Literal>)>,
    /// Order keys.
    pub order: Vec<(FieldRef, bool)>,
    /// 1-based start.
    pub start_position: u64,
    /// Page size (default 100).
    pub max_results: u64,
    /// Whether an implicit `Active = true` applies.
    pub active_only: bool,
}

/// Default `MAXRESULTS` **(inferred)**.
pub const DEFAULT_MAX_RESULTS: u64 = 100;
/// Largest `MAXRESULTS`.
pub const MAX_RESULTS_LIMIT: u64 = 1000;

fn resolve(entity: EntityType, field: &str) -> Result<FieldRef, String> {
    let mut parts = field.split('.');
    let first = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    let canon = entity.canonical_field(first).ok_or_else(|| {
        format!(
            "property '{field}' is not queryable for entity {}",
            entity.name()
        )
    })?;
    Ok(match (canon, rest.as_slice()) {
        ("Id", []) => FieldRef::Id,
        ("Active", []) => FieldRef::Active,
        ("MetaData", [sub]) if sub.eq_ignore_ascii_case("LastUpdatedTime") => FieldRef::LastUpdated,
        ("MetaData", [sub]) if sub.eq_ignore_ascii_case("CreateTime") => FieldRef::CreateTime,
        ("MetaData", _) => return Err(format!("property '{field}' is not queryable")),
        (canon, rest) => {
            let mut path = vec![canon.to_owned()];
            path.extend(rest.iter().map(|s| (*s).to_owned()));
            FieldRef::Path(path)
        }
    })
}

/// Resolves names and applies defaults and limits.
pub fn validate(q: &Query) -> Result<Validated, String> {
    let entity = EntityType::from_name(&q.entity)
        .ok_or_else(|| format!("Invalid entity name: {}", q.entity))?;
    let mut conditions = Vec::new();
    for c in &q.conditions {
        let f = resolve(entity, &c.field)?;
        if f == FieldRef::Active
            && c.values
                .iter()
                .any(|v| !matches!(v, Literal::Bool(_) | Literal::Str(_)))
        {
            return Err("Active takes true or false".into());
        }
        conditions.push((f, c.op, c.values.clone()));
    }
    let order = q
        .order
        .iter()
        .map(|(f, desc)| resolve(entity, f).map(|r| (r, *desc)))
        .collect::<Result<Vec<_>, _>>()?;
    let max_results = q.max_results.unwrap_or(DEFAULT_MAX_RESULTS);
    if !(1..=MAX_RESULTS_LIMIT).contains(&max_results) {
        return Err(format!(
            "MAXRESULTS must be between 1 and {MAX_RESULTS_LIMIT}, got {max_results}"
        ));
    }
    let start_position = q.start_position.unwrap_or(1);
    if start_position == 0 {
        return Err("STARTPOSITION must be 1 or more".into());
    }
    let active_only = entity.active_only_by_default()
        && !conditions.iter().any(|(f, _, _)| *f == FieldRef::Active);
    Ok(Validated {
        entity,
        count: q.count,
        conditions,
        order,
        start_position,
        max_results,
        active_only,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every statement that appears in the reference.
    pub(crate) const REFERENCE_QUERIES: &[&str] = &[
        "select * from Account STARTPOSITION 1 MAXRESULTS 1000",
        "select * from Account where Active=false",
        "select count(*) from Account where Active = True",
        "select * from Customer where Active=false and Metadata.LastUpdatedTime >= '2024-05-01T10:00:00'",
        "select * from Vendor where DisplayName = 'Books by Bessie'",
        "SELECT * FROM Customer WHERE Active IN (true, false)",
        "select * from Customer where Metadata.LastUpdatedTime >= '2024-05-01T10:00:00-00:00'",
        "select * from Item where Name LIKE '%Con%' orderby MetaData.LastUpdatedTime desc startposition 1 maxresults 10",
        "select * from TaxCode",
        "select * from TaxRate where Id IN ('3', '6')",
        "select * from Class maxresults 5 startposition 2",
        "select * from Account where AccountType = 'Expense' and Id < '100' and Id >= '1'",
    ];

    #[test]
    fn accepts_every_reference_query() {
        for q in REFERENCE_QUERIES {
            let parsed = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
            validate(&parsed).unwrap_or_else(|e| panic!("{q}: {e}"));
        }
    }

    #[test]
    fn builds_the_expected_ast() {
        let q = parse("select * from Customer where Active=false and Metadata.LastUpdatedTime >= '2024-05-01T10:00:00' ORDERBY Id DESC STARTPOSITION 11 MAXRESULTS 10")
            .expect("parses");
        assert!(!q.count);
        assert_eq!(q.entity, "Customer");
        assert_eq!(q.conditions.len(), 2);
        assert_eq!(q.conditions[0].values, vec![Literal::Bool(false)]);
        assert_eq!(q.conditions[1].op, CmpOp::Ge);
        assert_eq!(q.order, vec![("Id".to_owned(), true)]);
        assert_eq!((q.start_position, q.max_results), (Some(11), Some(10)));
        let v = validate(&q).expect("valid");
        assert_eq!(v.conditions[1].0, FieldRef::LastUpdated);
        assert!(
            !v.active_only,
            "an Active condition disables the implicit filter"
        );
    }

    #[test]
    fn strings_unescape_backslashes() {
        let q = parse(r"select * from Vendor where DisplayName = 'Bob\'s Shop'").expect("parses");
        assert_eq!(
            q.conditions[0].values,
            vec![Literal::Str("Bob's Shop".into())]
        );
    }

    #[test]
    fn rejects_malformed_statements() {
        for bad in [
            "",
            "select from Account",
            "select * Account",
            "select * from",
            "select * from Account where",
            "select * from Account where Name",
            "select * from Account where Name = ",
            "select * from Account where Name = 'x' or Name = 'y'",
            "select * from Account where Name = 'unterminated",
            "select Name from Account",
            "select * from Account maxresults",
            "select * from Account maxresults ten",
            "select * from Account where Active IN true",
            "select * from Account where Name LIKE 5",
            "select * from Account;",
            "delete from Account",
            "select * from Account where Name != 'x'",
        ] {
            let result = parse(bad)
                .map_err(|e| e.to_string())
                .and_then(|q| validate(&q).map(|_| ()));
            assert!(result.is_err(), "accepted malformed query {bad:?}");
        }
    }

    #[test]
    fn rejects_unknown_entities_properties_and_limits() {
        for bad in [
            "select * from Invoice2",
            "select * from account",
            "select * from Account where Colour = 'red'",
            "select * from Account maxresults 1001",
            "select * from Account startposition 0",
            "select * from Account where Metadata.Nope = '1'",
        ] {
            let q = parse(bad).expect("syntactically fine");
            assert!(validate(&q).is_err(), "accepted invalid query {bad:?}");
        }
    }

    #[test]
    fn errors_name_the_column() {
        let e = parse("select * from Account where Name = 'x' or Name = 'y'")
            .expect_err("OR is not supported");
        assert_eq!(e.column, 40);
        assert!(e.to_string().contains("Encountered \"or\""));
    }
}
