//! PROJECT (from QBO customers) and COST_CENTER (from classes or departments) (#42–#47).
//!
//! Payload: `{name, code: <QBO id>, description, is_enabled}` with the description
//! `Project - {name}, Id - {id}` or `Cost Center - {name}, Id - {id}` (#46); disabling adds
//! Fyle's `id`. A cost center that differs from a Fyle one only in case keeps Fyle's spelling
//! and is not created again (#47): the case-insensitive comparison of [`super::action`] finds
//! it, and a disable uses Fyle's name and id in its description, as the incumbent.

use serde_json::{Value, json};

use super::{Action, Candidate, Existing, SourceField, action};

fn description(field: &SourceField, name: &str, id: &str) -> String {
    match field {
        SourceField::CostCenter => format!("Cost Center - {name}, Id - {id}"),
        _ => format!("Project - {name}, Id - {id}"),
    }
}

/// The bulk rows for one batch of candidates (`field` is PROJECT or COST_CENTER).
pub fn payload(field: &SourceField, batch: &[Candidate], existing: &Existing) -> Vec<Value> {
    batch
        .iter()
        .filter_map(|c| match action(c, existing) {
            Action::Create => Some(json!({
                "name": c.name,
                "code": c.row.id,
                "description": description(field, &c.name, &c.row.id),
                "is_enabled": true,
            })),
            Action::Disable { id, fyle_name } => {
                let described = match field {
                    SourceField::CostCenter => description(field, &fyle_name, &id),
                    _ => description(field, &fyle_name, &c.row.id),
                };
                Some(json!({
                    "id": id,
                    "name": fyle_name,
                    "code": c.row.id,
                    "description": described,
                    "is_enabled": false,
                }))
            }
            Action::Keep => None,
        })
        .collect()
}

/// The bulk rows disabling old names after renames.
pub fn disables(pairs: &[(String, String)]) -> Vec<Value> {
    pairs
        .iter()
        .map(|(id, name)| json!({"id": id, "name": name, "is_enabled": false}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::{
        ImportPlan, candidates,
        tests::{fyle, plan, row},
    };

    #[test]
    fn projects_carry_the_incumbents_description() {
        let c = candidates(
            &SourceField::Project,
            &plan(),
            vec![row(
                "CUSTOMER",
                "8",
                "Freeman Sporting Goods:0969 Ocean View Road",
                true,
            )],
        );
        assert_eq!(
            payload(&SourceField::Project, &c, &Existing::default()),
            [json!({
                "name": "Freeman Sporting Goods:0969 Ocean View Road",
                "code": "8",
                "description": "Project - Freeman Sporting Goods:0969 Ocean View Road, Id - 8",
                "is_enabled": true,
            })]
        );
    }

    #[test]
    fn an_inactive_customer_disables_its_project() {
        let c = candidates(
            &SourceField::Project,
            &plan(),
            vec![row("CUSTOMER", "8", "Acme", false)],
        );
        let existing = Existing::new([fyle("301", "ACME", true)]);
        let rows = payload(&SourceField::Project, &c, &existing);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["id"], "301");
        assert_eq!(rows[0]["is_enabled"], false);
        assert_eq!(rows[0]["name"], "ACME");
    }

    #[test]
    fn cost_centers_keep_fyles_spelling_and_are_not_created_twice() {
        let p = ImportPlan {
            cost_centers_from: Some("CLASS".into()),
            ..plan()
        };
        let c = candidates(
            &SourceField::CostCenter,
            &p,
            vec![
                row("CLASS", "5100000000000030664", "adidas", true),
                row("CLASS", "77", "Retired", false),
                row("CLASS", "78", "Fresh", true),
            ],
        );
        let existing = Existing::new([fyle("41", "Adidas", true), fyle("42", "RETIRED", true)]);
        let rows = payload(&SourceField::CostCenter, &c, &existing);
        assert_eq!(
            rows,
            [
                json!({"name": "Fresh", "code": "78", "is_enabled": true,
                       "description": "Cost Center - Fresh, Id - 78"}),
                json!({"id": "42", "name": "RETIRED", "code": "77", "is_enabled": false,
                       "description": "Cost Center - RETIRED, Id - 42"}),
            ]
        );
    }
}
