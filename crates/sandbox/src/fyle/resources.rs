//! The Fyle admin resources: their paths, id kinds, webhook names, uniqueness keys, input
//! validation and the full list-item objects built from an input (reference §1.4).
//!
//! Data-API writes (`Mode::Api`) accept only the documented input keys (`additionalProperties:
//! false`), except that expense fields also accept `is_custom`, `column_name` and `default_value`
//! because the integration sends them (reference §5 item 4). Admin writes (`Mode::Admin`, the
//! `/_sandbox` API used to play "someone changed it in Fyle") may set any key.

use serde_json::{Map, Value, json};

/// The list/post resources of the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// `/admin/categories`
    Categories,
    /// `/admin/projects`
    Projects,
    /// `/admin/cost_centers`
    CostCenters,
    /// `/admin/expense_fields`
    ExpenseFields,
    /// `/admin/employees`
    Employees,
    /// `/admin/corporate_cards`
    CorporateCards,
    /// `/admin/tax_groups`
    TaxGroups,
    /// `/admin/departments`
    Departments,
    /// `/admin/subscriptions`
    Subscriptions,
    /// `/admin/dependent_expense_field_values`
    DependentValues,
}

/// Whether a write comes from the data API or from the sandbox admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Documented input keys only.
    Api,
    /// Any key.
    Admin,
}

impl Resource {
    /// Every stored resource.
    pub const ALL: [Resource; 10] = [
        Resource::Categories,
        Resource::Projects,
        Resource::CostCenters,
        Resource::ExpenseFields,
        Resource::Employees,
        Resource::CorporateCards,
        Resource::TaxGroups,
        Resource::Departments,
        Resource::Subscriptions,
        Resource::DependentValues,
    ];

    /// Path segment under `/platform/v1/admin/`.
    pub fn path(self) -> &'static str {
        match self {
            Resource::Categories => "categories",
            Resource::Projects => "projects",
            Resource::CostCenters => "cost_centers",
            Resource::ExpenseFields => "expense_fields",
            Resource::Employees => "employees",
            Resource::CorporateCards => "corporate_cards",
            Resource::TaxGroups => "tax_groups",
            Resource::Departments => "departments",
            Resource::Subscriptions => "subscriptions",
            Resource::DependentValues => "dependent_expense_field_values",
        }
    }

    /// Resolves a path segment.
    pub fn from_path(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.path() == s)
    }

    /// Index into per-org arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Webhook `resource` name, for resources that emit webhooks.
    pub fn webhook_name(self) -> Option<&'static str> {
        Some(match self {
            Resource::Categories => "CATEGORY",
            Resource::Projects => "PROJECT",
            Resource::CostCenters => "COST_CENTER",
            Resource::ExpenseFields => "EXPENSE_FIELD",
            Resource::Employees => "EMPLOYEE",
            Resource::CorporateCards => "CORPORATE_CARD",
            Resource::TaxGroups => "TAX_GROUP",
            Resource::DependentValues => "DEPENDENT_FIELD",
            Resource::Departments | Resource::Subscriptions => return None,
        })
    }

    /// Default `limit` (dependent values document 100).
    pub fn default_limit(self) -> usize {
        if self == Resource::DependentValues {
            100
        } else {
            50
        }
    }

    /// Prefix of string ids; `None` for integer ids.
    pub fn string_id_prefix(self) -> Option<&'static str> {
        match self {
            Resource::Employees => Some("ou"),
            Resource::CorporateCards => Some("ba"),
            Resource::TaxGroups => Some("tg"),
            Resource::Departments => Some("dept"),
            _ => None,
        }
    }

    /// `POST /admin/<path>` (single create/update) is served.
    pub fn accepts_post(self) -> bool {
        matches!(
            self,
            Resource::Categories
                | Resource::Projects
                | Resource::CostCenters
                | Resource::TaxGroups
                | Resource::ExpenseFields
                | Resource::Subscriptions
        )
    }

    /// `POST /admin/<path>/bulk` is served.
    pub fn accepts_bulk(self) -> bool {
        matches!(
            self,
            Resource::Categories
                | Resource::Projects
                | Resource::CostCenters
                | Resource::TaxGroups
                | Resource::DependentValues
        )
    }

    /// The key whose value names a row in `BulkError.data[].key` and in admin renames.
    pub fn name_key(self) -> &'static str {
        match self {
            Resource::ExpenseFields => "field_name",
            Resource::DependentValues => "expense_field_value",
            Resource::Subscriptions => "webhook_url",
            Resource::Employees => "code",
            Resource::CorporateCards => "nickname",
            _ => "name",
        }
    }

    /// Keys that the data API accepts in an input object.
    fn input_keys(self) -> &'static [&'static str] {
        match self {
            Resource::Categories => &[
                "id",
                "name",
                "sub_category",
                "is_enabled",
                "system_category",
                "code",
                "restricted_project_ids",
                "restricted_spender_user_ids",
            ],
            Resource::Projects => &[
                "id",
                "name",
                "sub_project",
                "code",
                "description",
                "is_enabled",
                "restricted_spender_user_ids",
                "approver_user_ids",
                "approver_emails",
                "category_ids",
                "default_billable",
            ],
            Resource::CostCenters => &[
                "id",
                "name",
                "code",
                "description",
                "is_enabled",
                "restricted_spender_user_ids",
                "restricted_spender_user_group",
            ],
            Resource::TaxGroups => &[
                "id",
                "name",
                "percentage",
                "is_enabled",
                "is_default",
                "code",
            ],
            Resource::ExpenseFields => &[
                "id",
                "field_name",
                "type",
                "is_mandatory",
                "is_enabled",
                "options",
                "default_value",
                "placeholder",
                "category_ids",
                "code",
                "parent_field_id",
                "is_custom",
                "column_name",
            ],
            Resource::Subscriptions => &["id", "is_enabled", "webhook_url", "subscribed_resources"],
            Resource::DependentValues => &[
                "id",
                "parent_expense_field_id",
                "parent_expense_field_value",
                "expense_field_id",
                "expense_field_value",
                "is_enabled",
            ],
            _ => &[],
        }
    }

    /// Keys required when creating.
    fn required_on_create(self) -> &'static [&'static str] {
        match self {
            Resource::Categories
            | Resource::Projects
            | Resource::CostCenters
            | Resource::Departments => &["name"],
            Resource::TaxGroups => &["name", "percentage", "is_enabled"],
            Resource::ExpenseFields => &["field_name", "type", "is_mandatory", "is_enabled"],
            Resource::Subscriptions => &["is_enabled", "webhook_url", "subscribed_resources"],
            Resource::DependentValues => &[
                "parent_expense_field_id",
                "parent_expense_field_value",
                "expense_field_id",
                "expense_field_value",
            ],
            Resource::Employees | Resource::CorporateCards => &[],
        }
    }

    /// The resource's uniqueness key (the IntegrityError rule; keys **(inferred)**).
    pub fn unique_key(self) -> Option<super::store::UniqueKeyFn> {
        fn text(m: &Map<String, Value>, k: &str) -> String {
            match m.get(k) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(v) => v.to_string(),
            }
        }
        Some(match self {
            Resource::Categories => |m| {
                Some(format!(
                    "{}\u{1f}{}",
                    text(m, "name"),
                    text(m, "sub_category")
                ))
            },
            Resource::Projects => |m| {
                Some(format!(
                    "{}\u{1f}{}",
                    text(m, "name"),
                    text(m, "sub_project")
                ))
            },
            Resource::CostCenters | Resource::TaxGroups => |m| Some(text(m, "name")),
            Resource::ExpenseFields => |m| Some(text(m, "field_name").to_lowercase()),
            Resource::DependentValues => |m| {
                Some(format!(
                    "{}\u{1f}{}\u{1f}{}",
                    text(m, "expense_field_id"),
                    text(m, "parent_expense_field_value"),
                    text(m, "expense_field_value")
                ))
            },
            _ => return None,
        })
    }

    /// Values shown in an IntegrityError message for a duplicate row.
    pub fn integrity_values(self, m: &Map<String, Value>, org_id: &str) -> String {
        let keys: &[&str] = match self {
            Resource::Categories => &["name", "sub_category"],
            Resource::Projects => &["name", "sub_project"],
            Resource::ExpenseFields => &["field_name"],
            Resource::DependentValues => &[
                "expense_field_id",
                "parent_expense_field_value",
                "expense_field_value",
            ],
            _ => &["name"],
        };
        let mut parts: Vec<String> = keys
            .iter()
            .map(|k| match m.get(*k) {
                Some(Value::String(s)) => format!("\"{s}\""),
                Some(v) => format!("\"{v}\""),
                None => "\"null\"".to_owned(),
            })
            .collect();
        parts.push(format!("\"{org_id}\""));
        format!("The values ({}) already exists", parts.join(", "))
    }

    /// Is `root` a column of this resource's list items?
    pub fn known_column(self, root: &str) -> bool {
        matches!(
            root,
            "id" | "org_id" | "created_at" | "updated_at" | "display_name"
        ) || self.defaults().get(root).is_some()
    }
    /// Defaults of every key of a new list item (ids and timestamps are set by the caller).
    fn defaults(self) -> Value {
        super::defaults::defaults(self)
    }
}

/// Field errors, in the marshmallow shape `{field: [messages]}`.
pub type FieldErrors = Map<String, Value>;

fn field_error(errors: &mut FieldErrors, key: &str, msg: &str) {
    errors.insert(key.to_owned(), json!([msg]));
}

/// Builds the stored object from an input, on top of `existing` (update) or the defaults (create).
/// Ids, `org_id` and timestamps are the caller's. Returns field errors on invalid input.
pub fn build(
    resource: Resource,
    existing: Option<&Map<String, Value>>,
    input: &Map<String, Value>,
    mode: Mode,
) -> Result<Map<String, Value>, FieldErrors> {
    let mut errors = FieldErrors::new();
    if mode == Mode::Api {
        let allowed = resource.input_keys();
        for key in input.keys() {
            if !allowed.contains(&key.as_str()) {
                field_error(&mut errors, key, "Unknown field.");
            }
        }
    }
    let mut out = match existing {
        Some(e) => e.clone(),
        None => {
            for key in resource.required_on_create() {
                if input.get(*key).is_none_or(Value::is_null) {
                    field_error(&mut errors, key, "Missing data for required field.");
                }
            }
            resource.defaults().as_object().cloned().unwrap_or_default()
        }
    };
    for (k, v) in input {
        if k == "id" || k == "org_id" || k == "created_at" || k == "updated_at" {
            continue;
        }
        out.insert(k.clone(), v.clone());
    }
    normalise(resource, &mut out, &mut errors);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn is_string_or_null(v: Option<&Value>) -> bool {
    matches!(v, None | Some(Value::Null | Value::String(_)))
}

fn compose(name: &Value, sub: &Value) -> Value {
    match (name, sub) {
        (Value::String(n), Value::String(s)) if !s.is_empty() => Value::from(format!("{n} / {s}")),
        (n, _) => n.clone(),
    }
}

/// Type checks and derived keys (`display_name`, option/placeholder null handling).
fn normalise(resource: Resource, out: &mut Map<String, Value>, errors: &mut FieldErrors) {
    let name_key = resource.name_key();
    if matches!(
        resource,
        Resource::Categories | Resource::Projects | Resource::CostCenters | Resource::TaxGroups
    ) {
        match out.get(name_key) {
            Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 255 => {}
            _ => field_error(errors, name_key, "Not a valid string."),
        }
    }
    if let Some(v) = out.get("is_enabled")
        && !v.is_boolean()
    {
        field_error(errors, "is_enabled", "Not a valid boolean.");
    }
    match resource {
        Resource::Categories => {
            if !is_string_or_null(out.get("sub_category")) {
                field_error(errors, "sub_category", "Not a valid string.");
            }
            if out
                .get("sub_category")
                .is_some_and(|s| Some(s) == out.get("name"))
            {
                field_error(
                    errors,
                    "sub_category",
                    "name and sub category cannot be same",
                );
            }
            let dn = compose(
                out.get("name").unwrap_or(&Value::Null),
                out.get("sub_category").unwrap_or(&Value::Null),
            );
            out.insert("display_name".into(), dn);
        }
        Resource::Projects => {
            let dn = compose(
                out.get("name").unwrap_or(&Value::Null),
                out.get("sub_project").unwrap_or(&Value::Null),
            );
            out.insert("display_name".into(), dn);
            out.remove("approver_emails");
        }
        Resource::CostCenters => {
            out.remove("restricted_spender_user_group");
        }
        Resource::TaxGroups => {
            if !out.get("percentage").is_some_and(Value::is_number) {
                field_error(errors, "percentage", "Not a valid number.");
            }
        }
        Resource::ExpenseFields => {
            if out.get("options").is_none_or(Value::is_null) {
                out.insert("options".into(), json!([]));
            }
            if out.get("placeholder").is_none_or(Value::is_null) {
                out.insert("placeholder".into(), json!(""));
            }
            match out.get("options") {
                Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
                _ => field_error(errors, "options", "Not a valid list of strings."),
            }
            const TYPES: [&str; 9] = [
                "TEXT",
                "NUMBER",
                "SELECT",
                "BOOLEAN",
                "MULTI_SELECT",
                "LOCATION",
                "USER_LIST",
                "DATE",
                "DEPENDENT_SELECT",
            ];
            if !out
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| TYPES.contains(&t))
            {
                field_error(
                    errors,
                    "type",
                    "Must be one of: TEXT, NUMBER, SELECT, BOOLEAN, MULTI_SELECT, LOCATION, USER_LIST, DATE, DEPENDENT_SELECT.",
                );
            }
            if !out.get("field_name").is_some_and(Value::is_string) {
                field_error(errors, "field_name", "Not a valid string.");
            }
        }
        Resource::Subscriptions => {
            if !out.get("webhook_url").is_some_and(Value::is_string) {
                field_error(errors, "webhook_url", "Not a valid string.");
            }
            if !out.get("subscribed_resources").is_some_and(Value::is_array) {
                field_error(errors, "subscribed_resources", "Not a valid list.");
            }
        }
        Resource::DependentValues => {
            for k in ["parent_expense_field_value", "expense_field_value"] {
                if !out.get(k).is_some_and(Value::is_string) {
                    field_error(errors, k, "Not a valid string.");
                }
            }
        }
        Resource::Departments => {
            let dn = compose(
                out.get("name").unwrap_or(&Value::Null),
                out.get("sub_department").unwrap_or(&Value::Null),
            );
            out.insert("display_name".into(), dn);
        }
        Resource::Employees | Resource::CorporateCards => {}
    }
}

#[cfg(test)]
mod tests;
