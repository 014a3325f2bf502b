//! CATEGORY from QBO accounts (of the workspace's charts of accounts) and items (#39, #42–#45).
//!
//! Payload per value: `{name, code: <QBO id>, is_enabled}`, plus Fyle's `id` to disable an
//! inactive value Fyle has; the category `Unspecified` is always sent enabled (#45) — Fyle's
//! fallback category must never be switched off by a QBO account of that name.
//!
//! **disable_items** (#59, [`disables_by_id`]): when `import_items` turns off, mapping deletes
//! the category → item mappings and sends the Fyle ids of those categories with its
//! `disable_items` command; a run disables each that Fyle still has enabled — exactly the
//! incumbent's set (categories mapped to items), never one merely sharing a name.

use serde_json::{Value, json};

use super::{Action, Candidate, Existing, FyleValue, action};

/// The name of the category the incumbent never disables.
pub const UNSPECIFIED: &str = "Unspecified";

/// The bulk rows for one batch of candidates.
pub fn payload(batch: &[Candidate], existing: &Existing) -> Vec<Value> {
    batch
        .iter()
        .filter_map(|c| {
            let enabled = c.row.active || c.name == UNSPECIFIED;
            match action(c, existing) {
                Action::Create => Some(json!({
                    "name": c.name,
                    "code": c.row.id,
                    "is_enabled": true,
                })),
                Action::Disable { id, fyle_name } if !enabled => Some(json!({
                    "id": id,
                    "name": fyle_name,
                    "code": c.row.id,
                    "is_enabled": false,
                })),
                _ => None,
            }
        })
        .collect()
}

/// The bulk rows disabling old names after renames.
pub fn disables(pairs: &[(String, String)]) -> Vec<Value> {
    pairs
        .iter()
        .filter(|(_, name)| name != UNSPECIFIED)
        .map(|(id, name)| json!({"id": id, "name": name, "is_enabled": false}))
        .collect()
}

/// The bulk rows disabling the Fyle values with ids `ids` that Fyle (`fyle`) has enabled;
/// unknown, already disabled and `Unspecified` values are left alone.
pub fn disables_by_id(ids: &[String], fyle: &[FyleValue]) -> Vec<Value> {
    fyle.iter()
        .filter(|f| f.active && f.value != UNSPECIFIED && ids.contains(&f.id))
        .map(|f| json!({"id": f.id, "name": f.value, "is_enabled": false}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::{
        SourceField, candidates,
        tests::{fyle, plan, row},
    };

    #[test]
    fn disable_items_disables_exactly_the_named_categories_that_are_enabled() {
        let in_fyle = [
            fyle("f1", "Gizmo Service", true),
            fyle("f2", "Advertising", true),
            fyle("f3", "Unspecified", true),
            fyle("f4", "Already Off", false),
        ];
        let ids: Vec<String> = ["f1", "f3", "f4", "gone"].map(str::to_owned).to_vec();
        assert_eq!(
            disables_by_id(&ids, &in_fyle),
            [json!({"id": "f1", "name": "Gizmo Service", "is_enabled": false})],
            "f2 was not named; Unspecified, a disabled and an unknown value are left alone"
        );
    }

    #[test]
    fn new_accounts_are_created_enabled_with_the_qbo_id_as_code() {
        let c = candidates(
            &SourceField::Category,
            &plan(),
            vec![row("ACCOUNT", "7", "Advertising", true)],
        );
        assert_eq!(
            payload(&c, &Existing::default()),
            [json!({"name": "Advertising", "code": "7", "is_enabled": true})]
        );
    }

    #[test]
    fn codes_on_make_coded_names() {
        let mut r = row("ACCOUNT", "7", "Advertising", true);
        r.code = Some("6000".into());
        let p = crate::modules::ImportPlan {
            account_codes: true,
            ..plan()
        };
        let c = candidates(&SourceField::Category, &p, vec![r.clone()]);
        assert_eq!(
            payload(&c, &Existing::default())[0]["name"],
            "6000: Advertising"
        );
        // Codes off: the plain name.
        let c = candidates(&SourceField::Category, &plan(), vec![r]);
        assert_eq!(payload(&c, &Existing::default())[0]["name"], "Advertising");
    }

    #[test]
    fn an_inactive_account_fyle_has_is_disabled_with_fyles_id() {
        let c = candidates(
            &SourceField::Category,
            &plan(),
            vec![
                row("ACCOUNT", "88", "old travel", false),
                row("ACCOUNT", "89", "Meals", true),
            ],
        );
        let existing = Existing::new([
            fyle("22330021", "Old Travel", true),
            fyle("5", "meals", true),
        ]);
        assert_eq!(
            payload(&c, &existing),
            [json!({"id": "22330021", "name": "Old Travel", "code": "88", "is_enabled": false})]
        );
    }

    #[test]
    fn unspecified_is_never_disabled() {
        let c = candidates(
            &SourceField::Category,
            &plan(),
            vec![row("ACCOUNT", "1", "Unspecified", false)],
        );
        let existing = Existing::new([fyle("9", "Unspecified", true)]);
        assert!(payload(&c, &existing).is_empty());
        assert!(disables(&[("9".into(), "Unspecified".into())]).is_empty());
    }

    #[test]
    fn a_reactivated_account_is_not_re_enabled() {
        let c = candidates(
            &SourceField::Category,
            &plan(),
            vec![row("ACCOUNT", "1", "Travel", true)],
        );
        let existing = Existing::new([fyle("9", "Travel", false)]);
        assert!(payload(&c, &existing).is_empty());
    }

    #[test]
    fn a_redelivered_batch_posts_nothing() {
        let rows = vec![
            row("ACCOUNT", "1", "Travel", true),
            row("ACCOUNT", "2", "Gone", false),
        ];
        let c = candidates(&SourceField::Category, &plan(), rows);
        // What Fyle has after the first post: Travel enabled, Gone disabled.
        let after = Existing::new([fyle("1", "Travel", true), fyle("2", "Gone", false)]);
        assert!(payload(&c, &after).is_empty());
    }
}
