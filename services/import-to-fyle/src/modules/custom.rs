//! Custom SELECT fields (#50): a custom mapping setting with `import_to_fyle` makes the QBO
//! values of its destination field the options of one Fyle expense field, posted whole in one
//! request, as the incumbent's `ExpenseCustomField` does.
//!
//! - **The field** is labelled as the incumbent labels it ([`label`]: `COST_CODE` → `Cost
//!   Code`), `type: SELECT`, `code: null`; when Fyle already has a custom SELECT field of that
//!   label (any case) its `id` is sent and its `is_mandatory` and `is_enabled` kept (an import
//!   never re-enables, #44), else it is created enabled and not mandatory. A label Fyle already uses for a system field is refused by Fyle, and that
//!   refusal is the run's (and `UpdateImportSettings`'s) error.
//! - **The placeholder** ([`placeholder`]): the mapping setting's, else the one Fyle has, else
//!   `Select {Label}`.
//! - **The options** follow the merchant list's rule ([`super::merchant::options`]): Fyle's
//!   current options plus the active QBO values, minus inactive and renamed-away values,
//!   deduplicated case-insensitively; nothing is posted when neither they nor the placeholder
//!   would change an existing field, or when they would be empty.

use serde_json::{Value, json};

/// The incumbent's label of a custom source field: Python's
/// `source_field.replace('_', ' ').title()` — a letter is upper-cased after anything but a
/// letter (a space, a digit, a hyphen), lower-cased after a letter.
pub fn label(source_field: &str) -> String {
    let mut out = String::with_capacity(source_field.len());
    let mut after_letter = false;
    for c in source_field.chars().map(|c| if c == '_' { ' ' } else { c }) {
        if c.is_alphabetic() {
            if after_letter {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
            after_letter = true;
        } else {
            out.push(c);
            after_letter = false;
        }
    }
    out
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
        // A Fyle admin's choices stand: mandatory or not, and enabled or not (an import never
        // re-enables, #44).
        for key in ["is_mandatory", "is_enabled"] {
            if let Some(v) = existing.get(key).filter(|v| v.is_boolean()) {
                field[key] = v.clone();
            }
        }
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
        assert_eq!(label("COST_CODE2X"), "Cost Code2X", "as Python's title()");
        assert_eq!(label("SUB-PROJECT"), "Sub-Project");
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
        let existing = json!({"id": 229506, "is_mandatory": true, "is_enabled": false});
        let updated = payload("Cost Code", "Select Cost Code", Some(&existing), &options);
        assert_eq!(updated["id"], 229506);
        assert_eq!(updated["is_mandatory"], true);
        assert_eq!(updated["is_enabled"], false, "never re-enabled");
    }
}
