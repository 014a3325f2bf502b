//! Attribute derivation: what a Fyle object means for the sync.
//!
//! One function per resource turns the object Fyle sends (in a webhook's `data` or as a list
//! item: the two have the same shape) into the attribute fyle-sync stores. The webhook path and
//! the polling path both call [`derive`], so the two can never disagree about a value.
//!
//! **Dependent values** (`/admin/dependent_expense_field_values`, webhook resource
//! `DEPENDENT_FIELD`) do not carry their field's name, which is their attribute type: a
//! `DEPENDENT_SELECT` expense field derives to [`Derived::DependentField`] (what its values
//! need, kept by fyle-sync), and a value derives with [`derive_dependent_value`] given that
//! field. [`derive`] alone skips a value ([`SkipReason::FieldUnknown`]).
//!
//! The rules are the incumbent's (incumbent checklist items 10–15, 20–22), with one deliberate
//! change: attributes are identified by their Fyle id (`source_id`), not by their value, so a
//! rename updates the row.
//!
//! Failure policy: an object that cannot be stored is an error, not a value — including one
//! holding a NUL character anywhere ([`contains_nul`]), which PostgreSQL text and `jsonb`
//! cannot hold: a pulled row with one is skipped instead of failing its page on every pull.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::{FyleAttributeType, options::clean_options, webhook::FyleResource};

/// One attribute value derived from a Fyle object.
#[derive(Debug, Clone, PartialEq)]
pub struct DerivedAttribute {
    pub attribute_type: FyleAttributeType,
    pub display_name: String,
    pub value: String,
    pub source_id: String,
    pub active: bool,
    pub detail: Option<Value>,
    pub source_updated_at: Option<DateTime<Utc>>,
}

/// A custom SELECT field: every option is an attribute of the field's type.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectField {
    pub attribute_type: FyleAttributeType,
    /// The field's `field_name`, stored as each option's display name.
    pub display_name: String,
    /// The expense field id.
    pub field_id: String,
    /// Cleaned options, in Fyle's order.
    pub options: Vec<String>,
    pub active: bool,
    /// `{custom_field_id, placeholder, is_mandatory, is_dependent}`, shared by every option.
    pub detail: Value,
    pub source_updated_at: Option<DateTime<Utc>>,
}

impl SelectField {
    /// The source id of one option. Options have no Fyle id of their own; the field id plus
    /// the option text identifies one, so two fields with the same option never collide.
    pub fn option_source_id(&self, option: &str) -> String {
        format!("{}:{}", self.field_id, option)
    }
}

/// A `DEPENDENT_SELECT` expense field: what its values need to be stored. Its values are
/// attributes of the field's own type (`COST_CODE` for "Cost Code"), like a custom SELECT
/// field's options, each keyed by the value's id.
#[derive(Debug, Clone, PartialEq)]
pub struct DependentField {
    /// The expense field id (the values' `expense_field_id`).
    pub field_id: i64,
    pub field_name: String,
    /// The parent expense field (the values' `parent_expense_field_id`); `None` leaves the
    /// field without values to list.
    pub parent_field_id: Option<i64>,
    pub placeholder: Value,
    pub is_mandatory: Value,
    /// A disabled field's values are stored inactive.
    pub enabled: bool,
    pub source_updated_at: Option<DateTime<Utc>>,
}

impl DependentField {
    /// The attribute type of the field's values.
    pub fn attribute_type(&self) -> FyleAttributeType {
        FyleAttributeType::custom(&self.field_name)
    }
}

/// What a Fyle object amounts to.
#[derive(Debug, Clone, PartialEq)]
pub enum Derived {
    Attribute(DerivedAttribute),
    SelectField(SelectField),
    /// A dependent field (the definition its values derive with; no attribute of its own).
    DependentField(DependentField),
    /// Nothing to store, and why.
    Skipped(SkipReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// An employee who has not accepted the invite (incumbent item 15).
    InviteNotAccepted,
    /// An expense field that is not a SELECT (incumbent item 20).
    NotASelectField,
    /// A system (non-custom) SELECT field other than Merchant, e.g. the Project field: its
    /// values are the id-keyed attributes of its own resource, not options.
    SystemField,
    /// A resource that carries no attribute (EXPENSE, REPORT, ORG_SETTING, unknown).
    NotAnAttribute,
    /// A dependent value derived without its field (see [`derive_dependent_value`]).
    FieldUnknown,
}

/// A Fyle object that lacks what its resource requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeriveError {
    #[error("`data` is not a JSON object")]
    NotAnObject,
    #[error("`data.{0}` is missing or null")]
    Missing(&'static str),
    #[error("`data.{field}` has the wrong type: expected {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("`data` holds a NUL character (\\u0000), which cannot be stored")]
    Nul,
}

/// Whether a JSON value holds a NUL character in any string or key. PostgreSQL's text and
/// `jsonb` cannot store one (JSON text may escape it as `\u0000`).
pub fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

type Result<T, E = DeriveError> = std::result::Result<T, E>;

/// Derive the attribute(s) a Fyle object of `resource` stands for.
pub fn derive(resource: &FyleResource, data: &Value) -> Result<Derived> {
    if contains_nul(data) {
        return Err(DeriveError::Nul);
    }
    let obj = Obj::new(data)?;
    let attribute = |attribute_type: FyleAttributeType, value: String, active: bool, detail| {
        Ok(Derived::Attribute(DerivedAttribute {
            display_name: attribute_type.display_name().to_owned(),
            attribute_type,
            value,
            source_id: obj.id()?,
            active,
            detail,
            source_updated_at: obj.updated_at(),
        }))
    };
    match resource {
        FyleResource::Category => {
            let name = obj.req_str("name")?;
            let value = joined_name(name, obj.opt_str("sub_category")?, true);
            attribute(FyleAttributeType::Category, value, obj.enabled()?, None)
        }
        FyleResource::Project => {
            let name = obj.req_str("name")?;
            let value = joined_name(name, obj.opt_str("sub_project")?, false);
            let detail = json!({ "default_billable": obj.get("default_billable") });
            attribute(
                FyleAttributeType::Project,
                value,
                obj.enabled()?,
                Some(detail),
            )
        }
        FyleResource::CostCenter => {
            let value = obj.req_str("name")?.to_owned();
            attribute(FyleAttributeType::CostCenter, value, obj.enabled()?, None)
        }
        FyleResource::TaxGroup => {
            let value = obj.req_str("name")?.to_owned();
            let detail = json!({ "tax_rate": obj.get("percentage") });
            attribute(
                FyleAttributeType::TaxGroup,
                value,
                obj.enabled()?,
                Some(detail),
            )
        }
        FyleResource::Employee => {
            if obj.get("has_accepted_invite") == Value::Bool(false) {
                return Ok(Derived::Skipped(SkipReason::InviteNotAccepted));
            }
            let value = obj.path_str(&["user", "email"])?.to_owned();
            attribute(
                FyleAttributeType::Employee,
                value,
                obj.enabled()?,
                Some(employee_detail(data)),
            )
        }
        FyleResource::CorporateCard => {
            let value = card_value(
                obj.req_str("bank_name")?,
                obj.req_str("card_number")?,
                obj.opt_str("nickname")?,
            );
            let detail = json!({ "cardholder_name": obj.get("cardholder_name") });
            attribute(FyleAttributeType::CorporateCard, value, true, Some(detail))
        }
        FyleResource::ExpenseField if obj.opt_str("type")? == Some("DEPENDENT_SELECT") => {
            dependent_field(&obj)
        }
        FyleResource::ExpenseField => select_field(&obj),
        // The value's shape is checked (so ingest refuses a malformed one); storing it needs
        // its field (`derive_dependent_value`).
        FyleResource::DependentField => {
            DependentValue::read(&obj)?;
            Ok(Derived::Skipped(SkipReason::FieldUnknown))
        }
        FyleResource::Expense
        | FyleResource::Report
        | FyleResource::OrgSetting
        | FyleResource::Other(_) => Ok(Derived::Skipped(SkipReason::NotAnAttribute)),
    }
}

/// `name / sub` when `sub` is set (and, for categories, differs from `name`), else `name`.
pub fn joined_name(name: &str, sub: Option<&str>, skip_when_equal: bool) -> String {
    match sub.filter(|s| !s.is_empty()) {
        Some(sub) if !(skip_when_equal && sub == name) => format!("{name} / {sub}"),
        _ => name.to_owned(),
    }
}

/// `"{bank_name} - {last 6 characters of card_number without '-'}"`, plus `" ({nickname})"`.
pub fn card_value(bank_name: &str, card_number: &str, nickname: Option<&str>) -> String {
    let chars: Vec<char> = card_number.chars().collect();
    let last6: String = chars[chars.len().saturating_sub(6)..]
        .iter()
        .filter(|c| **c != '-')
        .collect();
    match nickname.filter(|n| !n.is_empty()) {
        Some(nick) => format!("{bank_name} - {last6} ({nick})"),
        None => format!("{bank_name} - {last6}"),
    }
}

fn employee_detail(data: &Value) -> Value {
    let at = |path: &[&str]| {
        path.iter()
            .try_fold(data, |v, key| v.get(key))
            .cloned()
            .unwrap_or(Value::Null)
    };
    json!({
        "user_id": at(&["user_id"]),
        "employee_code": at(&["code"]),
        "full_name": at(&["user", "full_name"]),
        "location": at(&["location"]),
        "department": at(&["department", "name"]),
        "department_id": at(&["department_id"]),
        "department_code": at(&["department", "code"]),
    })
}

fn select_field(obj: &Obj<'_>) -> Result<Derived> {
    if obj.opt_str("type")? != Some("SELECT") {
        return Ok(Derived::Skipped(SkipReason::NotASelectField));
    }
    let is_merchant = obj.opt_str("column_name")? == Some("merchant");
    if obj.get("is_custom") == Value::Bool(false) && !is_merchant {
        return Ok(Derived::Skipped(SkipReason::SystemField));
    }
    let field_name = obj.req_str("field_name")?;
    let raw_options: Vec<&str> = match obj.0.get("options") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(_) => {
            return Err(DeriveError::WrongType {
                field: "options",
                expected: "array of strings",
            });
        }
    };
    let field_id = obj.id()?;
    Ok(Derived::SelectField(SelectField {
        // The merchant field is the system MERCHANT type; every other field is a custom type.
        attribute_type: if is_merchant {
            FyleAttributeType::Merchant
        } else {
            FyleAttributeType::custom(field_name)
        },
        display_name: field_name.to_owned(),
        detail: json!({
            "custom_field_id": obj.get("id"),
            "placeholder": obj.get("placeholder"),
            "is_mandatory": obj.get("is_mandatory"),
            "is_dependent": false,
        }),
        field_id,
        options: clean_options(&raw_options),
        active: obj.enabled()?,
        source_updated_at: obj.updated_at(),
    }))
}

/// A `DEPENDENT_SELECT` expense field. A system (non-custom) one is skipped like a system
/// SELECT field.
fn dependent_field(obj: &Obj<'_>) -> Result<Derived> {
    if obj.get("is_custom") == Value::Bool(false) {
        return Ok(Derived::Skipped(SkipReason::SystemField));
    }
    Ok(Derived::DependentField(DependentField {
        field_id: obj.req_i64("id")?,
        field_name: obj.req_str("field_name")?.to_owned(),
        parent_field_id: obj.opt_i64("parent_field_id")?,
        placeholder: obj.get("placeholder"),
        is_mandatory: obj.get("is_mandatory"),
        enabled: obj.enabled()?,
        source_updated_at: obj.updated_at(),
    }))
}

/// A dependent value (`expense_field_value` under its `parent_expense_field_value`), an
/// attribute of its field's type: `{custom_field_id, placeholder, is_mandatory, is_dependent:
/// true}` as the incumbent's DEPENDENT_FIELD detail, plus `parent_value`. Active when both the
/// value and its field are enabled. A value of another field than `field` is an error.
pub fn derive_dependent_value(data: &Value, field: &DependentField) -> Result<Derived> {
    if contains_nul(data) {
        return Err(DeriveError::Nul);
    }
    let obj = Obj::new(data)?;
    let value = DependentValue::read(&obj)?;
    if value.field_id != field.field_id {
        return Err(DeriveError::WrongType {
            field: "expense_field_id",
            expected: "the id of the value's dependent field",
        });
    }
    Ok(Derived::Attribute(DerivedAttribute {
        display_name: field.field_name.clone(),
        attribute_type: field.attribute_type(),
        value: value.value.to_owned(),
        source_id: value.id,
        active: value.enabled && field.enabled,
        detail: Some(json!({
            "custom_field_id": field.field_id,
            "placeholder": field.placeholder,
            "is_mandatory": field.is_mandatory,
            "is_dependent": true,
            "parent_value": value.parent_value,
        })),
        source_updated_at: obj.updated_at(),
    }))
}

/// The id of the dependent field a value object belongs to (`expense_field_id`).
pub fn dependent_value_field_id(data: &Value) -> Result<i64> {
    Obj::new(data)?.req_i64("expense_field_id")
}

/// What a dependent value object must hold.
struct DependentValue<'a> {
    id: String,
    field_id: i64,
    value: &'a str,
    parent_value: Option<&'a str>,
    enabled: bool,
}

impl<'a> DependentValue<'a> {
    fn read(obj: &Obj<'a>) -> Result<Self> {
        Ok(Self {
            id: obj.id()?,
            field_id: obj.req_i64("expense_field_id")?,
            value: obj.req_str("expense_field_value")?,
            parent_value: obj.opt_str("parent_expense_field_value")?,
            enabled: obj.enabled()?,
        })
    }
}

/// Typed access to the fields of a Fyle object.
struct Obj<'a>(&'a serde_json::Map<String, Value>);

impl<'a> Obj<'a> {
    fn new(data: &'a Value) -> Result<Self> {
        data.as_object().map(Obj).ok_or(DeriveError::NotAnObject)
    }

    fn get(&self, key: &str) -> Value {
        self.0.get(key).cloned().unwrap_or(Value::Null)
    }

    /// Fyle ids are integers for some resources and strings for others; both become strings.
    fn id(&self) -> Result<String> {
        match self.0.get("id") {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            Some(Value::Null) | None => Err(DeriveError::Missing("id")),
            Some(_) => Err(DeriveError::WrongType {
                field: "id",
                expected: "string or integer",
            }),
        }
    }

    fn req_i64(&self, key: &'static str) -> Result<i64> {
        self.opt_i64(key)?.ok_or(DeriveError::Missing(key))
    }

    /// An integer id, sent as a JSON number (or a string of digits).
    fn opt_i64(&self, key: &'static str) -> Result<Option<i64>> {
        let wrong = DeriveError::WrongType {
            field: key,
            expected: "integer",
        };
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or(wrong),
            Some(Value::String(s)) => s.parse().map(Some).map_err(|_| wrong),
            Some(_) => Err(wrong),
        }
    }

    fn req_str(&self, key: &'static str) -> Result<&'a str> {
        self.opt_str(key)?.ok_or(DeriveError::Missing(key))
    }

    fn opt_str(&self, key: &'static str) -> Result<Option<&'a str>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(DeriveError::WrongType {
                field: key,
                expected: "string",
            }),
        }
    }

    fn path_str(&self, path: &[&'static str]) -> Result<&'a str> {
        let leaf = path.last().copied().unwrap_or("?");
        let mut current = self.0.get(path[0]);
        for key in &path[1..] {
            current = current.and_then(|v| v.get(key));
        }
        match current {
            Some(Value::String(s)) => Ok(s),
            None | Some(Value::Null) => Err(DeriveError::Missing(leaf)),
            Some(_) => Err(DeriveError::WrongType {
                field: leaf,
                expected: "string",
            }),
        }
    }

    /// `is_enabled`, defaulting to true when absent (as the incumbent does).
    fn enabled(&self) -> Result<bool> {
        match self.0.get("is_enabled") {
            None | Some(Value::Null) => Ok(true),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(DeriveError::WrongType {
                field: "is_enabled",
                expected: "boolean",
            }),
        }
    }

    fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.0
            .get("updated_at")
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn one(resource: FyleResource, data: Value) -> DerivedAttribute {
        match derive(&resource, &data) {
            Ok(Derived::Attribute(a)) => a,
            other => panic!("expected one attribute, got {other:?}"),
        }
    }

    #[test]
    fn an_object_holding_a_nul_character_does_not_derive() {
        let nul_in_name = json!({"id": 1, "name": "Bad\u{0}name", "is_enabled": true});
        assert_eq!(
            derive(&FyleResource::Category, &nul_in_name),
            Err(DeriveError::Nul)
        );
        let nul_in_a_key = json!({"id": 1, "name": "Fine", "is_enabled": true, "x\u{0}": 1});
        assert_eq!(
            derive(&FyleResource::Category, &nul_in_a_key),
            Err(DeriveError::Nul)
        );
        assert!(
            derive(
                &FyleResource::Category,
                &json!({"id": 1, "name": "Fine", "is_enabled": true})
            )
            .is_ok()
        );
    }

    #[test]
    fn category_joins_sub_category_unless_empty_or_equal() {
        let travel = one(
            FyleResource::Category,
            json!({"id": 22330099, "name": "Travel", "sub_category": "Flight", "is_enabled": true,
                   "updated_at": "2024-05-02T10:00:00.000000+00:00"}),
        );
        assert_eq!(travel.value, "Travel / Flight");
        assert_eq!(travel.source_id, "22330099");
        assert_eq!(travel.display_name, "Category");
        assert!(travel.active);
        assert_eq!(travel.detail, None);
        assert_eq!(
            travel.source_updated_at.map(|t| t.to_rfc3339()),
            Some("2024-05-02T10:00:00+00:00".to_owned())
        );
        let same = one(
            FyleResource::Category,
            json!({"id": 1, "name": "Meals", "sub_category": "Meals"}),
        );
        assert_eq!(same.value, "Meals");
        let none = one(
            FyleResource::Category,
            json!({"id": 1, "name": "Meals", "sub_category": null, "is_enabled": false}),
        );
        assert_eq!(none.value, "Meals");
        assert!(!none.active);
        let empty = one(
            FyleResource::Category,
            json!({"id": 1, "name": "Meals", "sub_category": ""}),
        );
        assert_eq!(empty.value, "Meals");
    }

    #[test]
    fn project_joins_sub_project_and_keeps_default_billable() {
        let p = one(
            FyleResource::Project,
            json!({"id": 300178, "name": "Freeman", "sub_project": "Ocean View", "is_enabled": false, "default_billable": true}),
        );
        assert_eq!(p.value, "Freeman / Ocean View");
        assert!(!p.active);
        assert_eq!(p.detail, Some(json!({"default_billable": true})));
        // Unlike categories, a sub project equal to the name is still joined.
        let same = one(
            FyleResource::Project,
            json!({"id": 1, "name": "A", "sub_project": "A"}),
        );
        assert_eq!(same.value, "A / A");
    }

    #[test]
    fn cost_center_and_tax_group_use_the_name() {
        let cc = one(
            FyleResource::CostCenter,
            json!({"id": 9587, "name": "01: San Francisco", "is_enabled": true}),
        );
        assert_eq!(
            (cc.value.as_str(), cc.display_name.as_str()),
            ("01: San Francisco", "Cost Center")
        );
        let tg = one(
            FyleResource::TaxGroup,
            json!({"id": "tgX", "name": "GST @18%", "percentage": 18.0, "is_enabled": true}),
        );
        assert_eq!(tg.value, "GST @18%");
        assert_eq!(tg.source_id, "tgX");
        assert_eq!(tg.detail, Some(json!({"tax_rate": 18.0})));
    }

    #[test]
    fn employee_value_is_the_email_with_the_incumbent_detail() {
        let e = one(
            FyleResource::Employee,
            json!({"id": "ouJSY9XI9s9k", "user_id": "usq", "code": "E84122", "location": "Bangalore Ofc",
                   "user": {"email": "ashwin.t@fyle.in", "full_name": "Joanna"},
                   "department_id": "dept1", "department": {"name": "Engineering", "code": "ENG"},
                   "is_enabled": true, "has_accepted_invite": true}),
        );
        assert_eq!(e.value, "ashwin.t@fyle.in");
        assert_eq!(
            e.detail,
            Some(
                json!({"user_id": "usq", "employee_code": "E84122", "full_name": "Joanna",
                        "location": "Bangalore Ofc", "department": "Engineering",
                        "department_id": "dept1", "department_code": "ENG"})
            )
        );
    }

    #[test]
    fn employee_without_accepted_invite_is_skipped() {
        let d = derive(
            &FyleResource::Employee,
            &json!({"id": "ou1", "user": {"email": "a@b.c"}, "has_accepted_invite": false}),
        );
        assert_eq!(d, Ok(Derived::Skipped(SkipReason::InviteNotAccepted)));
    }

    #[test]
    fn corporate_card_value_uses_the_last_six_characters_without_dashes() {
        let c = one(
            FyleResource::CorporateCard,
            json!({"id": "bacc", "bank_name": "Bank of America", "card_number": "xxxx-xxxx-xxxx-8084",
                   "cardholder_name": "Joanna", "nickname": null}),
        );
        assert_eq!(c.value, "Bank of America - x8084");
        assert!(c.active);
        assert_eq!(c.detail, Some(json!({"cardholder_name": "Joanna"})));
        assert_eq!(card_value("Chase", "123456", None), "Chase - 123456");
        assert_eq!(card_value("Chase", "1-23456", None), "Chase - 23456");
        assert_eq!(
            card_value("Amex", "8084", Some("Travel")),
            "Amex - 8084 (Travel)"
        );
    }

    #[test]
    fn select_field_options_are_cleaned_and_typed_by_field_name() {
        let d = derive(
            &FyleResource::ExpenseField,
            &json!({"id": 229506, "field_name": "Cost Code", "type": "SELECT", "options": ["North", "\"A", "B\"", "North"],
                    "placeholder": "Select Cost Code", "is_mandatory": false, "is_enabled": true}),
        );
        let Ok(Derived::SelectField(f)) = d else {
            panic!("expected a select field, got {d:?}")
        };
        assert_eq!(f.attribute_type.as_str(), "CUSTOM:COST_CODE");
        assert_eq!(f.display_name, "Cost Code");
        assert_eq!(f.options, vec!["North", "A,B"]);
        assert_eq!(f.option_source_id("North"), "229506:North");
        assert_eq!(
            f.detail,
            json!({"custom_field_id": 229506, "placeholder": "Select Cost Code", "is_mandatory": false, "is_dependent": false})
        );
    }

    #[test]
    fn non_select_expense_fields_are_skipped() {
        let d = derive(
            &FyleResource::ExpenseField,
            &json!({"id": 1, "field_name": "Notes", "type": "TEXT"}),
        );
        assert_eq!(d, Ok(Derived::Skipped(SkipReason::NotASelectField)));
    }

    #[test]
    fn system_select_fields_other_than_merchant_are_skipped() {
        let project = json!({"id": 1, "field_name": "Project", "column_name": "project_id", "type": "SELECT",
                             "is_custom": false, "options": ["A"]});
        assert_eq!(
            derive(&FyleResource::ExpenseField, &project),
            Ok(Derived::Skipped(SkipReason::SystemField))
        );
        let merchant = json!({"id": 225221, "field_name": "Merchant", "column_name": "merchant", "type": "SELECT",
                              "is_custom": false, "options": ["ADP", "Goner"]});
        let Ok(Derived::SelectField(f)) = derive(&FyleResource::ExpenseField, &merchant) else {
            panic!("merchant options")
        };
        assert_eq!(f.attribute_type, FyleAttributeType::Merchant);
        assert_eq!(f.options, vec!["ADP", "Goner"]);
    }

    fn cost_code_field() -> DependentField {
        let field = json!({"id": 229510, "field_name": "Cost Code", "column_name": "text_column5",
            "type": "DEPENDENT_SELECT", "options": [], "placeholder": "Select Cost Code",
            "is_enabled": true, "is_custom": true, "is_mandatory": false, "parent_field_id": 203020,
            "updated_at": "2024-01-01T00:00:00.000000+00:00"});
        match derive(&FyleResource::ExpenseField, &field) {
            Ok(Derived::DependentField(f)) => f,
            other => panic!("expected a dependent field, got {other:?}"),
        }
    }

    #[test]
    fn a_dependent_select_field_derives_to_the_definition_its_values_need() {
        let field = cost_code_field();
        assert_eq!(field.field_id, 229510);
        assert_eq!(field.parent_field_id, Some(203020));
        assert_eq!(field.attribute_type().as_str(), "CUSTOM:COST_CODE");
        assert!(field.enabled);
    }

    #[test]
    fn a_dependent_value_is_an_attribute_of_its_fields_type_keyed_by_its_own_id() {
        let mut field = cost_code_field();
        let value = json!({"id": 88001, "org_id": "orNoatdUnm1w", "parent_expense_field_id": 203020,
            "expense_field_id": 229510, "parent_expense_field_value": "Freeman Sporting Goods",
            "expense_field_value": "CC-100", "is_enabled": true,
            "updated_at": "2024-01-01T00:00:00.000000+00:00"});
        let Ok(Derived::Attribute(a)) = derive_dependent_value(&value, &field) else {
            panic!("a dependent value derives to one attribute")
        };
        assert_eq!(a.attribute_type.as_str(), "CUSTOM:COST_CODE");
        assert_eq!(a.display_name, "Cost Code");
        assert_eq!(
            (a.value.as_str(), a.source_id.as_str()),
            ("CC-100", "88001")
        );
        assert!(a.active);
        assert_eq!(
            a.detail,
            Some(
                json!({"custom_field_id": 229510, "placeholder": "Select Cost Code",
                "is_mandatory": false, "is_dependent": true, "parent_value": "Freeman Sporting Goods"})
            )
        );
        // A disabled field's values are inactive; without its field a value is skipped.
        field.enabled = false;
        let Ok(Derived::Attribute(a)) = derive_dependent_value(&value, &field) else {
            panic!("a dependent value derives to one attribute")
        };
        assert!(!a.active);
        assert_eq!(
            derive(&FyleResource::DependentField, &value),
            Ok(Derived::Skipped(SkipReason::FieldUnknown))
        );
        // Without its field a malformed value is still refused (ingest answers 400).
        assert_eq!(
            derive(
                &FyleResource::DependentField,
                &json!({"id": 1, "expense_field_id": 229510})
            ),
            Err(DeriveError::Missing("expense_field_value"))
        );
        // A value of another field is refused, not stored under the wrong type.
        let other = json!({"id": 1, "expense_field_id": 1, "expense_field_value": "X"});
        assert!(derive_dependent_value(&other, &field).is_err());
    }

    #[test]
    fn non_attribute_resources_are_skipped() {
        let d = derive(&FyleResource::Report, &json!({"id": "rp1"}));
        assert_eq!(d, Ok(Derived::Skipped(SkipReason::NotAnAttribute)));
    }

    #[test]
    fn malformed_objects_are_errors_that_name_the_field() {
        assert_eq!(
            derive(&FyleResource::Category, &json!([1])),
            Err(DeriveError::NotAnObject)
        );
        assert_eq!(
            derive(&FyleResource::Category, &json!({"name": "x"})),
            Err(DeriveError::Missing("id"))
        );
        assert_eq!(
            derive(&FyleResource::Category, &json!({"id": 1})),
            Err(DeriveError::Missing("name"))
        );
        assert_eq!(
            derive(&FyleResource::Category, &json!({"id": 1, "name": 5})),
            Err(DeriveError::WrongType {
                field: "name",
                expected: "string"
            })
        );
        assert_eq!(
            derive(&FyleResource::Employee, &json!({"id": "ou1", "user": {}})),
            Err(DeriveError::Missing("email"))
        );
    }
}
