//! Checks a parsed QBO [`Query`] against the entity model: resolves the entity (case-sensitive)
//! and property names (case-insensitive, `Metadata` → `MetaData`), applies the `MAXRESULTS`
//! (default 100 **(inferred)**, at most 1000) and `STARTPOSITION` (≥ 1) rules, and decides whether
//! the implicit `Active = true` of name lists applies. Pure.

use super::{
    entity::EntityType,
    query_parser::{CmpOp, Literal, Query},
};

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
    use crate::qbo::query_parser::parse;

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
}
