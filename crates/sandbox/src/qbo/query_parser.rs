//! The QBO query language (reference §3.2): a recursive-descent parser over the tokens of
//! [`super::query_lexer`] producing a [`Query`] AST; [`super::query_validate`] then resolves the
//! entity and property names. Pure functions.
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

use super::query_lexer::tokenize;
pub use super::query_lexer::{ParseError, Token};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qbo::query_validate::{FieldRef, validate};

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
    fn errors_name_the_column() {
        let e = parse("select * from Account where Name = 'x' or Name = 'y'")
            .expect_err("OR is not supported");
        assert_eq!(e.column, 40);
        assert!(e.to_string().contains("Encountered \"or\""));
    }
}
