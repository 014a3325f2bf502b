//! Custom SELECT fields (#50): a custom mapping setting with `import_to_fyle` makes the QBO
//! values of its destination field the options of one Fyle expense field, posted whole in one
//! request, as the incumbent's `ExpenseCustomField` does.
//!
//! - **The field** is labelled as the incumbent labels it ([`label`]: `COST_CODE` → `Cost
//!   Code`), `type: SELECT`, enabled, `code: null`; when Fyle already has a custom field of
//!   that label its `id` is sent and its `is_mandatory` kept, else it is created (not
//!   mandatory). A label Fyle already uses for a system field is refused by Fyle, and that
//!   refusal is the run's (and `UpdateImportSettings`'s) error.
//! - **The placeholder** ([`placeholder`]): the mapping setting's, else the one Fyle has, else
//!   `Select {Label}`.
//! - **The options** follow the merchant list's rule ([`super::merchant::options`]): Fyle's
//!   current options plus the active QBO values, minus inactive and renamed-away values,
//!   deduplicated case-insensitively; nothing is posted when neither they nor the placeholder
//!   would change an existing field, or when they would be empty.

use serde_json::{Value, json};

/// The incumbent's label of a custom source field: `source_field.replace('_', ' ').title()`.
pub fn label(source_field: &str) -> String {
    source_field
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            match chars.next() {
                Some(first) => first
                    .to_uppercase()
                    .chain(chars.flat_map(char::to_lowercase))
                    .collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<String>>()
        .join(" ")
}

/// The placeholder to send: the setting's, else the field's current one, else
/// `Select {label}`.
pub fn placeholder(setting: Option<&str>, existing: Option<&Value>, label: &str) -> String {
    let current = existing
        .and_then(|f| f.get("placeholder"))
        .and_then(Value::as_str);
    setting
        .or(current)
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map_or_else(|| format!("Select {label}"), str::to_owned)
}

/// The whole field to post: `existing` is Fyle's field of that label, if any.
pub fn payload(
    label: &str,
    placeholder: &str,
    existing: Option<&Value>,
    options: &[String],
) -> Value {
    let mut field = json!({
        "field_name": label,
        "type": "SELECT",
        "is_enabled": true,
        "is_mandatory": false,
        "placeholder": placeholder,
        "options": options,
        "code": null,
    });
    if let Some(existing) = existing {
        field["id"] = existing.get("id").cloned().unwrap_or(Value::Null);
        field["is_mandatory"] = existing
            .get("is_mandatory")
            .cloned()
            .unwrap_or(Value::Bool(false));
    }
    field
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_incumbents_title_case() {
        assert_eq!(label("COST_CODE"), "Cost Code");
        assert_eq!(label("WORK_ORDER_2"), "Work Order 2");
        assert_eq!(label("REGION"), "Region");
    }

    #[test]
    fn the_placeholder_is_the_settings_then_fyles_then_select_label() {
        let existing = json!({"id": 7, "placeholder": "Pick one"});
        assert_eq!(
            placeholder(Some("Choose"), Some(&existing), "Cost Code"),
            "Choose"
        );
        assert_eq!(placeholder(None, Some(&existing), "Cost Code"), "Pick one");
        assert_eq!(placeholder(None, None, "Cost Code"), "Select Cost Code");
        assert_eq!(
            placeholder(Some("  "), None, "Cost Code"),
            "Select Cost Code"
        );
    }

    #[test]
    fn an_existing_field_is_updated_by_id_keeping_is_mandatory() {
        let options = ["A".to_owned(), "B".to_owned()];
        let created = payload("Cost Code", "Select Cost Code", None, &options);
        assert_eq!(
            created,
            json!({"field_name": "Cost Code", "type": "SELECT", "is_enabled": true,
                   "is_mandatory": false, "placeholder": "Select Cost Code",
                   "options": ["A", "B"], "code": null})
        );
        let existing = json!({"id": 229506, "is_mandatory": true});
        let updated = payload("Cost Code", "Select Cost Code", Some(&existing), &options);
        assert_eq!(updated["id"], 229506);
        assert_eq!(updated["is_mandatory"], true);
    }
}
