//! What import-to-fyle reads of a workspace: its Fyle org and the import settings, as an
//! [`ImportPlan`]. Pure: from the projection's snapshot (mapping owns the settings and
//! publishes them on `settings.workspaces.v1`).
//!
//! COST_CENTER imports need a mapping setting (COST_CENTER ← CLASS or DEPARTMENT) that the
//! snapshot does not carry yet, so [`ImportPlan::cost_centers_from`] stays `None` and the
//! module runs only in unit tests until mapping publishes it.

use attrsync_kafka::workspaces::{self, ProjectedWorkspace};

use crate::modules::ImportPlan;

/// The plan of a projected workspace; an undecodable snapshot yields "import nothing".
pub fn plan(projected: &ProjectedWorkspace) -> ImportPlan {
    let import = projected.import_settings();
    let charts_of_accounts = workspaces::charts_of_accounts(&import);
    ImportPlan {
        import_categories: import.import_categories,
        import_items: import.import_items,
        charts_of_accounts,
        account_codes: import.import_code_fields.iter().any(|f| f == "ACCOUNT"),
        import_projects: import.import_projects,
        import_tax_codes: import.import_tax_codes,
        import_vendors_as_merchants: import.import_vendors_as_merchants,
        cost_centers_from: None,
    }
}

#[cfg(test)]
mod tests {
    use attrsync_proto::v1::{ImportSettings, WorkspaceSettings, WorkspaceSnapshot};
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
    fn no_settings_import_nothing_with_the_default_chart() {
        let p = plan(&projected(&WorkspaceSnapshot::default()));
        assert!(crate::modules::sources(&p).is_empty());
        assert_eq!(p.charts_of_accounts, ["Expense"]);
    }

    #[test]
    fn the_import_flags_and_codes_are_read() {
        let snapshot = WorkspaceSnapshot {
            settings: Some(WorkspaceSettings {
                import_settings: Some(ImportSettings {
                    import_categories: true,
                    import_projects: true,
                    import_code_fields: vec!["ACCOUNT".into()],
                    charts_of_accounts: vec!["Expense".into(), "Income".into()],
                    ..Default::default()
                }),
                webhook_flags: None,
            }),
            ..Default::default()
        };
        let p = plan(&projected(&snapshot));
        assert!(p.import_categories && p.import_projects && p.account_codes);
        assert!(!p.import_vendors_as_merchants);
        assert_eq!(p.charts_of_accounts, ["Expense", "Income"]);
    }
}
