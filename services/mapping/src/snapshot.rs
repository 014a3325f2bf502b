//! Rows ⇄ the `WorkspaceSnapshot` contract.
//!
//! Pure conversions: the registry's rows become the snapshot every other service projects,
//! and settings arriving over gRPC become rows, with the incumbent's defaults for values a
//! caller left unspecified.

use std::collections::HashMap;

use attrsync_proto::{
    time,
    v1::{
        AutoMapEmployees, CategorySyncVersion, EmployeeFieldMapping, ImportSettings, WebhookFlags,
        Workspace, WorkspaceSettings, WorkspaceSnapshot,
    },
};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::Value;

use crate::{
    import_settings::SettingRow,
    schema::{workspace_settings, workspaces},
};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = workspaces)]
pub(crate) struct WorkspaceRow {
    pub id: i64,
    pub name: String,
    pub fyle_org_id: String,
    pub qbo_realm_id: Option<String>,
    pub fyle_currency: Option<String>,
    pub cluster_domain: Option<String>,
    pub onboarding_state: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub org_settings: Value,
}

/// The settings columns (everything but the key and `updated_at`).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = workspace_settings)]
pub(crate) struct SettingsRow {
    pub import_categories: bool,
    pub import_items: bool,
    pub import_projects: bool,
    pub import_tax_codes: bool,
    pub import_vendors_as_merchants: bool,
    pub charts_of_accounts: Vec<String>,
    pub import_code_fields: Vec<String>,
    pub category_sync_version: String,
    pub auto_map_employees: Option<String>,
    pub employee_field_mapping: String,
    pub is_sync_after_timestamp_enabled: bool,
    pub map_fyle_cards_qbo_account: bool,
    pub reimbursable_expenses_object: Option<String>,
    pub corporate_credit_card_expenses_object: Option<String>,
    pub auto_create_destination_entity: bool,
    pub auto_create_merchants_as_vendors: bool,
    pub auto_map_case_insensitive: bool,
    pub fyle_webhook_sync_enabled: bool,
    pub qbo_webhook_sync_enabled: bool,
    pub fyle_webhook_by_type: Value,
    pub qbo_webhook_by_entity: Value,
    pub default_ccc_account_id: Option<String>,
}

impl Default for SettingsRow {
    /// The incumbent's defaults (WorkspaceGeneralSettings, FeatureConfig).
    fn default() -> Self {
        Self {
            import_categories: false,
            import_items: false,
            import_projects: false,
            import_tax_codes: false,
            import_vendors_as_merchants: false,
            charts_of_accounts: vec!["Expense".to_owned()],
            import_code_fields: Vec::new(),
            category_sync_version: "V2".to_owned(),
            auto_map_employees: None,
            employee_field_mapping: "EMPLOYEE".to_owned(),
            is_sync_after_timestamp_enabled: true,
            map_fyle_cards_qbo_account: true,
            reimbursable_expenses_object: None,
            corporate_credit_card_expenses_object: None,
            auto_create_destination_entity: false,
            auto_create_merchants_as_vendors: false,
            auto_map_case_insensitive: true,
            fyle_webhook_sync_enabled: true,
            qbo_webhook_sync_enabled: true,
            fyle_webhook_by_type: Value::Object(Default::default()),
            qbo_webhook_by_entity: Value::Object(Default::default()),
            default_ccc_account_id: None,
        }
    }
}

impl SettingsRow {
    /// Settings given by a caller. `import_settings` and `webhook_flags` are each taken whole
    /// when present (proto3 cannot tell an omitted boolean from `false`); an absent one keeps
    /// the defaults. Enum values left unspecified take the incumbent's default.
    pub(crate) fn from_proto(settings: Option<&WorkspaceSettings>) -> Self {
        let mut row = Self::default();
        let Some(settings) = settings else { return row };
        if let Some(s) = &settings.import_settings {
            row.apply_import_settings(s);
        }
        if let Some(f) = &settings.webhook_flags {
            row.fyle_webhook_sync_enabled = f.fyle_webhook_sync_enabled;
            row.qbo_webhook_sync_enabled = f.qbo_webhook_sync_enabled;
            row.fyle_webhook_by_type = bool_map_to_json(&f.fyle_by_attribute_type);
            row.qbo_webhook_by_entity = bool_map_to_json(&f.qbo_by_entity);
        }
        row
    }

    pub(crate) fn apply_import_settings(&mut self, s: &ImportSettings) {
        self.import_categories = s.import_categories;
        self.import_items = s.import_items;
        self.import_projects = s.import_projects;
        self.import_tax_codes = s.import_tax_codes;
        self.import_vendors_as_merchants = s.import_vendors_as_merchants;
        // An empty list imports nothing and is never what a caller means: keep the default.
        if !s.charts_of_accounts.is_empty() {
            self.charts_of_accounts = s.charts_of_accounts.clone();
        }
        self.import_code_fields = s.import_code_fields.clone();
        self.category_sync_version = match s.category_sync_version() {
            CategorySyncVersion::V1 => "V1",
            CategorySyncVersion::V2 | CategorySyncVersion::Unspecified => "V2",
        }
        .to_owned();
        self.auto_map_employees = match s.auto_map_employees() {
            AutoMapEmployees::Unspecified => None,
            AutoMapEmployees::Email => Some("EMAIL".to_owned()),
            AutoMapEmployees::Name => Some("NAME".to_owned()),
            AutoMapEmployees::EmployeeCode => Some("EMPLOYEE_CODE".to_owned()),
        };
        self.employee_field_mapping = match s.employee_field_mapping() {
            EmployeeFieldMapping::Vendor => "VENDOR",
            EmployeeFieldMapping::Employee | EmployeeFieldMapping::Unspecified => "EMPLOYEE",
        }
        .to_owned();
        self.is_sync_after_timestamp_enabled = s.is_sync_after_timestamp_enabled;
        self.map_fyle_cards_qbo_account = s.map_fyle_cards_qbo_account;
        self.reimbursable_expenses_object = s.reimbursable_expenses_object.clone();
        self.corporate_credit_card_expenses_object =
            s.corporate_credit_card_expenses_object.clone();
        self.auto_create_destination_entity = s.auto_create_destination_entity;
        self.auto_create_merchants_as_vendors = s.auto_create_merchants_as_vendors;
        self.auto_map_case_insensitive = s.auto_map_case_insensitive;
        self.default_ccc_account_id = s
            .default_ccc_account_id
            .as_deref()
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_owned);
    }

    pub(crate) fn to_proto(&self) -> WorkspaceSettings {
        let mut import = ImportSettings {
            import_categories: self.import_categories,
            import_items: self.import_items,
            import_projects: self.import_projects,
            import_tax_codes: self.import_tax_codes,
            import_vendors_as_merchants: self.import_vendors_as_merchants,
            charts_of_accounts: self.charts_of_accounts.clone(),
            import_code_fields: self.import_code_fields.clone(),
            is_sync_after_timestamp_enabled: self.is_sync_after_timestamp_enabled,
            map_fyle_cards_qbo_account: self.map_fyle_cards_qbo_account,
            reimbursable_expenses_object: self.reimbursable_expenses_object.clone(),
            corporate_credit_card_expenses_object: self
                .corporate_credit_card_expenses_object
                .clone(),
            auto_create_destination_entity: self.auto_create_destination_entity,
            auto_create_merchants_as_vendors: self.auto_create_merchants_as_vendors,
            auto_map_case_insensitive: self.auto_map_case_insensitive,
            default_ccc_account_id: self.default_ccc_account_id.clone(),
            ..Default::default()
        };
        import.set_category_sync_version(match self.category_sync_version.as_str() {
            "V1" => CategorySyncVersion::V1,
            _ => CategorySyncVersion::V2,
        });
        import.set_auto_map_employees(match self.auto_map_employees.as_deref() {
            Some("EMAIL") => AutoMapEmployees::Email,
            Some("NAME") => AutoMapEmployees::Name,
            Some("EMPLOYEE_CODE") => AutoMapEmployees::EmployeeCode,
            _ => AutoMapEmployees::Unspecified,
        });
        import.set_employee_field_mapping(match self.employee_field_mapping.as_str() {
            "VENDOR" => EmployeeFieldMapping::Vendor,
            _ => EmployeeFieldMapping::Employee,
        });
        WorkspaceSettings {
            import_settings: Some(import),
            webhook_flags: Some(WebhookFlags {
                fyle_webhook_sync_enabled: self.fyle_webhook_sync_enabled,
                qbo_webhook_sync_enabled: self.qbo_webhook_sync_enabled,
                fyle_by_attribute_type: json_to_bool_map(&self.fyle_webhook_by_type),
                qbo_by_entity: json_to_bool_map(&self.qbo_webhook_by_entity),
            }),
            mapping_settings: Vec::new(),
        }
    }
}

pub(crate) fn bool_map_to_json(map: &HashMap<String, bool>) -> Value {
    Value::Object(
        map.iter()
            .map(|(k, v)| (k.clone(), Value::Bool(*v)))
            .collect(),
    )
}

pub(crate) fn json_to_bool_map(value: &Value) -> HashMap<String, bool> {
    value
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_bool().map(|b| (k.clone(), b)))
                .collect()
        })
        .unwrap_or_default()
}

/// The full snapshot of one workspace; `mapping_settings` ordered by destination field.
pub(crate) fn snapshot(
    workspace: &WorkspaceRow,
    settings: &SettingsRow,
    mapping_settings: &[SettingRow],
) -> WorkspaceSnapshot {
    let mut settings = settings.to_proto();
    settings.mapping_settings = mapping_settings.iter().map(SettingRow::to_proto).collect();
    WorkspaceSnapshot {
        workspace: Some(Workspace {
            id: workspace.id,
            name: workspace.name.clone(),
            fyle_org_id: workspace.fyle_org_id.clone(),
            qbo_realm_id: workspace.qbo_realm_id.clone(),
            fyle_currency: workspace.fyle_currency.clone(),
            cluster_domain: workspace.cluster_domain.clone(),
            onboarding_state: workspace.onboarding_state.clone(),
            created_at: Some(time::to_proto(workspace.created_at)),
            updated_at: Some(time::to_proto(workspace.updated_at)),
            org_settings_json: workspace.org_settings.to_string(),
        }),
        settings: Some(settings),
        version: workspace.version,
        deleted: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_incumbents() {
        let s = SettingsRow::from_proto(None).to_proto();
        let import = s.import_settings.expect("import settings");
        assert_eq!(import.charts_of_accounts, vec!["Expense"]);
        assert_eq!(import.category_sync_version(), CategorySyncVersion::V2);
        assert!(import.is_sync_after_timestamp_enabled);
        assert!(import.map_fyle_cards_qbo_account);
        assert!(!import.import_categories);
        let flags = s.webhook_flags.expect("flags");
        assert!(flags.fyle_webhook_sync_enabled);
        assert!(flags.fyle_by_attribute_type.is_empty());
    }

    #[test]
    fn given_settings_round_trip() {
        let mut import = ImportSettings {
            import_categories: true,
            charts_of_accounts: vec!["Expense".into(), "Other Expense".into()],
            import_code_fields: vec!["ACCOUNT".into()],
            reimbursable_expenses_object: Some("BILL".into()),
            ..Default::default()
        };
        import.set_auto_map_employees(AutoMapEmployees::Email);
        import.set_employee_field_mapping(EmployeeFieldMapping::Vendor);
        import.set_category_sync_version(CategorySyncVersion::V1);
        let flags = WebhookFlags {
            fyle_webhook_sync_enabled: false,
            qbo_webhook_sync_enabled: true,
            fyle_by_attribute_type: HashMap::from([("CATEGORY".to_owned(), true)]),
            qbo_by_entity: HashMap::new(),
        };
        let given = WorkspaceSettings {
            import_settings: Some(import),
            webhook_flags: Some(flags),
            mapping_settings: Vec::new(),
        };
        assert_eq!(SettingsRow::from_proto(Some(&given)).to_proto(), given);
    }
}
