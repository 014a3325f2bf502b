//! What qbo-sync reads of a workspace: its realm, the settings derivation depends on, and when
//! it was created (the size limit binds only newer workspaces), and which Fyle values it creates
//! in QBO ([`AutoCreate`], see [`crate::auto_create`]). Pure: from the projection's
//! snapshot (mapping owns the settings and publishes them on `settings.workspaces.v1`).

use attrsync_kafka::workspaces::{self, ProjectedWorkspace};
use attrsync_proto::{
    time,
    v1::{CategorySyncVersion as ProtoVersion, EmployeeFieldMapping, ImportSettings},
};
use chrono::{DateTime, Utc};

use crate::rules::{CategorySyncVersion, SyncEntity, WorkspaceRules};

/// A workspace as qbo-sync sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct QboWorkspace {
    pub workspace_id: i64,
    pub realm_id: Option<String>,
    pub rules: WorkspaceRules,
    /// `None` when the snapshot carries no creation time (treated as grandfathered by nothing:
    /// the size limit then applies).
    pub created_at: Option<DateTime<Utc>>,
    /// Which Fyle values qbo-sync creates in QBO.
    pub auto_create: AutoCreate,
}

/// The import settings that ask qbo-sync to create QBO entities for Fyle values (the seed's
/// "import to QBO"). Off unless the workspace chose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AutoCreate {
    /// Fyle employees become QBO entities of this type (`Employee` or `Vendor`, per
    /// `employee_field_mapping`) when `auto_create_destination_entity` is on; `None`: off,
    /// also when the mapping is unspecified.
    pub employees_as: Option<SyncEntity>,
    /// Fyle merchants become QBO vendors (`auto_create_merchants_as_vendors`).
    pub merchants_as_vendors: bool,
}

impl AutoCreate {
    /// Reads the import settings.
    pub fn of(import: &ImportSettings) -> Self {
        let employees_as = if import.auto_create_destination_entity {
            match EmployeeFieldMapping::try_from(import.employee_field_mapping) {
                Ok(EmployeeFieldMapping::Employee) => Some(SyncEntity::Employee),
                Ok(EmployeeFieldMapping::Vendor) => Some(SyncEntity::Vendor),
                _ => None,
            }
        } else {
            None
        };
        Self {
            employees_as,
            merchants_as_vendors: import.auto_create_merchants_as_vendors,
        }
    }
}

/// Reads the projection row; a snapshot that does not decode yields the defaults (the rules
/// then follow the incumbent's defaults rather than failing every sync).
pub fn of(projected: &ProjectedWorkspace) -> QboWorkspace {
    let snapshot = projected.decoded_snapshot();
    let import = snapshot
        .settings
        .as_ref()
        .and_then(|s| s.import_settings.clone())
        .unwrap_or_default();
    let charts = workspaces::charts_of_accounts(&import);
    let category_sync_version = match ProtoVersion::try_from(import.category_sync_version) {
        Ok(ProtoVersion::V1) => CategorySyncVersion::V1,
        _ => CategorySyncVersion::V2,
    };
    let auto_create = AutoCreate::of(&import);
    QboWorkspace {
        workspace_id: projected.workspace_id,
        auto_create,
        realm_id: projected.qbo_realm_id.clone(),
        rules: WorkspaceRules {
            charts_of_accounts: charts,
            category_sync_version,
            import_items: import.import_items,
        },
        created_at: snapshot
            .workspace
            .and_then(|w| w.created_at)
            .as_ref()
            .and_then(time::from_proto),
    }
}

#[cfg(test)]
mod tests {
    use attrsync_proto::v1::{ImportSettings, Workspace, WorkspaceSettings, WorkspaceSnapshot};
    use prost::Message as _;
    use serde_json::json;

    use super::*;

    fn projected(snapshot: &WorkspaceSnapshot) -> ProjectedWorkspace {
        ProjectedWorkspace {
            workspace_id: 7,
            fyle_org_id: "or1".into(),
            qbo_realm_id: Some("123".into()),
            fyle_webhook_sync_enabled: true,
            fyle_webhook_by_type: json!({}),
            qbo_webhook_sync_enabled: true,
            qbo_webhook_by_entity: json!({}),
            deleted: false,
            version: 1,
            snapshot: snapshot.encode_to_vec(),
        }
    }

    #[test]
    fn a_workspace_without_settings_gets_the_incumbent_defaults() {
        let w = of(&projected(&WorkspaceSnapshot::default()));
        assert_eq!(w.rules.charts_of_accounts, ["Expense"]);
        assert_eq!(w.rules.category_sync_version, CategorySyncVersion::V2);
        assert!(!w.rules.import_items);
        assert_eq!(w.realm_id.as_deref(), Some("123"));
        assert_eq!(w.auto_create, AutoCreate::default());
    }

    #[test]
    fn auto_create_follows_the_import_settings() {
        let settings = |on: bool, mapping: EmployeeFieldMapping, merchants: bool| ImportSettings {
            auto_create_destination_entity: on,
            employee_field_mapping: mapping as i32,
            auto_create_merchants_as_vendors: merchants,
            ..Default::default()
        };
        let employee = AutoCreate::of(&settings(true, EmployeeFieldMapping::Employee, false));
        assert_eq!(employee.employees_as, Some(SyncEntity::Employee));
        assert!(!employee.merchants_as_vendors);
        let vendor = AutoCreate::of(&settings(true, EmployeeFieldMapping::Vendor, true));
        assert_eq!(vendor.employees_as, Some(SyncEntity::Vendor));
        assert!(vendor.merchants_as_vendors);
        // The switch off, or no mapping chosen: employees are not created.
        assert_eq!(
            AutoCreate::of(&settings(false, EmployeeFieldMapping::Vendor, false)),
            AutoCreate::default()
        );
        assert_eq!(
            AutoCreate::of(&settings(true, EmployeeFieldMapping::Unspecified, false)).employees_as,
            None
        );
    }

    #[test]
    fn chosen_settings_and_the_creation_time_are_read() {
        let created = DateTime::parse_from_rfc3339("2025-01-02T03:04:05Z")
            .expect("valid")
            .with_timezone(&Utc);
        let snapshot = WorkspaceSnapshot {
            workspace: Some(Workspace {
                id: 7,
                created_at: Some(time::to_proto(created)),
                ..Default::default()
            }),
            settings: Some(WorkspaceSettings {
                mapping_settings: Vec::new(),
                import_settings: Some(ImportSettings {
                    charts_of_accounts: vec!["Expense".into(), "Income".into()],
                    category_sync_version: ProtoVersion::V1 as i32,
                    import_items: true,
                    ..Default::default()
                }),
                webhook_flags: None,
            }),
            version: 3,
            deleted: false,
        };
        let w = of(&projected(&snapshot));
        assert_eq!(w.rules.charts_of_accounts, ["Expense", "Income"]);
        assert_eq!(w.rules.category_sync_version, CategorySyncVersion::V1);
        assert!(w.rules.import_items);
        assert_eq!(w.created_at, Some(created));
    }
}
