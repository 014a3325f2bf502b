//! Unit tests of resource input validation and derived keys.

use super::*;

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

#[test]
fn category_display_name_follows_sub_category() {
    let out = build(
        Resource::Categories,
        None,
        &obj(json!({"name": "Travel", "sub_category": "Flight"})),
        Mode::Api,
    )
    .expect("valid category");
    assert_eq!(out["display_name"], "Travel / Flight");
    assert_eq!(out["is_enabled"], true);
    assert!(out.contains_key("restricted_project_ids"));
    let renamed = build(
        Resource::Categories,
        Some(&out),
        &obj(json!({"sub_category": null})),
        Mode::Api,
    )
    .expect("valid update");
    assert_eq!(renamed["display_name"], "Travel");
}

#[test]
fn api_rejects_unknown_and_missing_keys_admin_does_not() {
    let err = build(
        Resource::Categories,
        None,
        &obj(json!({"colour": "red"})),
        Mode::Api,
    )
    .expect_err("unknown key and missing name");
    assert!(err.contains_key("colour") && err.contains_key("name"));
    let ok = build(
        Resource::Categories,
        None,
        &obj(json!({"name": "A", "colour": "red"})),
        Mode::Admin,
    )
    .expect("admin may add keys");
    assert_eq!(ok["colour"], "red");
}

#[test]
fn expense_field_accepts_is_custom_and_nulls() {
    let input = obj(
        json!({"field_name": "Merchant", "type": "SELECT", "is_enabled": true,
        "is_mandatory": false, "options": null, "placeholder": null, "is_custom": false}),
    );
    let out = build(Resource::ExpenseFields, None, &input, Mode::Api).expect("valid field");
    assert_eq!(out["options"], json!([]));
    assert_eq!(out["placeholder"], "");
    assert_eq!(out["is_custom"], false);
}

#[test]
fn integrity_message_lists_key_values_and_org() {
    let m = obj(json!({"name": "fast and furious", "sub_category": "formula one"}));
    assert_eq!(
        Resource::Categories.integrity_values(&m, "oriSOntNdZGd"),
        "The values (\"fast and furious\", \"formula one\", \"oriSOntNdZGd\") already exists"
    );
}
