//! What import-to-fyle reads of a workspace: its Fyle org and the import settings, as an
//! [`ImportPlan`]. Pure: from the projection's snapshot (mapping owns the settings and
//! publishes them on `settings.workspaces.v1`, mapping settings included).
//!
//! Projects are imported when a `PROJECT → CUSTOMER` mapping setting says `import_to_fyle`
//! (the incumbent's rule since its migration 009) or the legacy `import_projects` flag is on;
//! a PROJECT setting pointing at another QBO field is not imported by this version. Cost
//! centers are imported from the QBO field their `import_to_fyle` mapping setting names, when
//! it is `CLASS` or `DEPARTMENT`. Custom fields (#50) are the custom mapping settings with
//! `import_to_fyle`, each from the QBO field it names.

use attrsync_kafka::workspaces::{self, ProjectedWorkspace};

use crate::modules::{CustomImport, ImportPlan, SourceField};

/// The plan of a projected workspace; an undecodable snapshot yields "import nothing".
pub fn plan(projected: &ProjectedWorkspace) -> ImportPlan {
    let settings = projected.decoded_snapshot().settings.unwrap_or_default();
    let import = settings.import_settings.unwrap_or_default();
    let imported_from = |source: &str| {
        settings
            .mapping_settings
            .iter()
            .find(|m| m.source_field == source && m.import_to_fyle)
            .map(|m| m.destination_field.clone())
    };
    let charts_of_accounts = workspaces::charts_of_accounts(&import);
    ImportPlan {
        import_categories: import.import_categories,
        import_items: import.import_items,
        charts_of_accounts,
        account_codes: import.import_code_fields.iter().any(|f| f == "ACCOUNT"),
        import_projects: import.import_projects
            || imported_from("PROJECT").is_some_and(|d| d == "CUSTOMER"),
        import_tax_codes: import.import_tax_codes,
        import_vendors_as_merchants: import.import_vendors_as_merchants,
        cost_centers_from: imported_from("COST_CENTER")
            .filter(|d| d == "CLASS" || d == "DEPARTMENT"),
        custom_fields: settings
            .mapping_settings
            .iter()
            .filter(|m| m.is_custom && m.import_to_fyle)
            .filter_map(|m| {
                SourceField::parse(&m.source_field)
                    .filter(|f| matches!(f, SourceField::Custom(_)))
                    .map(|_| CustomImport {
                        source_field: m.source_field.clone(),
                        destination_field: m.destination_field.clone(),
                        placeholder: m.source_placeholder.clone(),
                    })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use attrsync_proto::v1::{
        ImportSettings, MappingSetting, WorkspaceSettings, WorkspaceSnapshot,
    };
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
                mapping_settings: Vec::new(),
            }),
            ..Default::default()
        };
        let p = plan(&projected(&snapshot));
        assert!(p.import_categories && p.import_projects && p.account_codes);
        assert!(!p.import_vendors_as_merchants);
        assert_eq!(p.charts_of_accounts, ["Expense", "Income"]);
        assert_eq!(p.cost_centers_from, None);
    }

    #[test]
    fn projects_and_cost_centers_follow_their_imported_mapping_settings() {
        let setting = |source: &str, destination: &str, import_to_fyle| MappingSetting {
            source_field: source.into(),
            destination_field: destination.into(),
            import_to_fyle,
            ..Default::default()
        };
        let with = |mapping_settings| WorkspaceSnapshot {
            settings: Some(WorkspaceSettings {
                mapping_settings,
                ..Default::default()
            }),
            ..Default::default()
        };
        let p = plan(&projected(&with(vec![
            setting("PROJECT", "CUSTOMER", true),
            setting("COST_CENTER", "DEPARTMENT", true),
        ])));
        assert!(p.import_projects);
        assert_eq!(p.cost_centers_from.as_deref(), Some("DEPARTMENT"));
        let p = plan(&projected(&with(vec![
            setting("PROJECT", "CUSTOMER", false),
            setting("COST_CENTER", "CLASS", false),
        ])));
        assert!(!p.import_projects, "mapped but not imported");
        assert_eq!(p.cost_centers_from, None);
        let p = plan(&projected(&with(vec![setting(
            "COST_CENTER",
            "VENDOR",
            true,
        )])));
        assert_eq!(
            p.cost_centers_from, None,
            "cost centers come from CLASS or DEPARTMENT only"
        );
    }
}
