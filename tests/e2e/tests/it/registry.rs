//! mapping's workspace registry over gRPC, and its snapshots on the compacted topic.

use std::{collections::HashMap, time::Duration};

use attrsync_e2e::TestStack;
use attrsync_kafka::{envelope, topics};
use attrsync_proto::{
    Payload,
    v1::{
        CreateWorkspaceRequest, GetWorkspaceRequest, ImportSettings, ListWorkspacesRequest,
        UpdateWebhookFlagsRequest, WorkspaceSettings, WorkspaceSnapshot,
    },
};
use tonic::Code;

use crate::kafka_reader::read_until;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspaces_are_created_found_listed_and_their_flags_updated() {
    let stack = TestStack::start().await.unwrap();
    let mut mapping = stack.mapping.clone();
    let created = mapping
        .create_workspace(CreateWorkspaceRequest {
            name: "Acme".into(),
            fyle_org_id: "orAcme1".into(),
            qbo_realm_id: Some("9130357766900456".into()),
            settings: Some(WorkspaceSettings {
                mapping_settings: Vec::new(),
                import_settings: Some(ImportSettings {
                    import_categories: true,
                    ..Default::default()
                }),
                webhook_flags: None,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let workspace = created.workspace.clone().unwrap();
    assert_eq!(
        (workspace.name.as_str(), workspace.onboarding_state.as_str()),
        ("Acme", "CONNECTION")
    );
    assert_eq!(created.version, 1);
    let import = created.settings.clone().unwrap().import_settings.unwrap();
    assert!(import.import_categories);
    assert_eq!(
        import.charts_of_accounts,
        vec!["Expense"],
        "unspecified settings keep the incumbent's defaults"
    );
    assert!(
        created
            .settings
            .clone()
            .unwrap()
            .webhook_flags
            .unwrap()
            .fyle_webhook_sync_enabled
    );

    let again = mapping
        .create_workspace(CreateWorkspaceRequest {
            name: "Acme 2".into(),
            fyle_org_id: "orAcme1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
    let empty = mapping
        .create_workspace(CreateWorkspaceRequest {
            name: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    let missing = mapping
        .get_workspace(GetWorkspaceRequest {
            workspace_id: 999_999,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let second = mapping
        .create_workspace(CreateWorkspaceRequest {
            name: "Beta".into(),
            fyle_org_id: "orBeta1".into(),
            qbo_realm_id: Some("9130357766900456".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let page = mapping
        .list_workspaces(ListWorkspacesRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.workspaces.len(), 1);
    assert_eq!(page.next_after_id, workspace.id);
    let rest = mapping
        .list_workspaces(ListWorkspacesRequest {
            after_id: page.next_after_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.workspaces, vec![second.clone()]);
    assert_eq!(rest.next_after_id, 0);
    let by_realm = mapping
        .list_workspaces(ListWorkspacesRequest {
            qbo_realm_id: Some("9130357766900456".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_realm.workspaces.len(), 2, "a QBO company may be shared");
    let by_org = mapping
        .list_workspaces(ListWorkspacesRequest {
            fyle_org_id: Some("orBeta1".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_org.workspaces, vec![second]);

    let updated = mapping
        .update_webhook_flags(UpdateWebhookFlagsRequest {
            workspace_id: workspace.id,
            fyle_webhook_sync_enabled: Some(false),
            set_fyle_by_attribute_type: HashMap::from([("CATEGORY".to_owned(), true)]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.version, 2);
    let flags = updated.settings.clone().unwrap().webhook_flags.unwrap();
    assert!(!flags.fyle_webhook_sync_enabled);
    assert_eq!(
        flags.fyle_by_attribute_type,
        HashMap::from([("CATEGORY".to_owned(), true)])
    );
    let fetched = mapping
        .get_workspace(GetWorkspaceRequest {
            workspace_id: workspace.id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched, updated);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_is_published_as_a_full_snapshot_keyed_by_workspace() {
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, _) = stack.create_workspace().await.unwrap();
    stack
        .mapping
        .clone()
        .update_webhook_flags(UpdateWebhookFlagsRequest {
            workspace_id,
            qbo_webhook_sync_enabled: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    let messages = read_until(
        &stack.topic(topics::WORKSPACE_SETTINGS),
        Duration::from_secs(60),
        |seen| seen.len() >= 2,
    )
    .await
    .unwrap();
    let snapshots: Vec<WorkspaceSnapshot> = messages
        .iter()
        .map(|m| {
            assert_eq!(m.key.as_deref(), Some(workspace_id.to_string().as_bytes()));
            match envelope::decode(&m.payload).unwrap().payload {
                Some(Payload::WorkspaceSnapshot(s)) => s,
                other => panic!("unexpected payload {other:?}"),
            }
        })
        .collect();
    assert_eq!(
        snapshots.iter().map(|s| s.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(
        snapshots[0]
            .settings
            .as_ref()
            .unwrap()
            .webhook_flags
            .as_ref()
            .unwrap()
            .qbo_webhook_sync_enabled
    );
    assert!(
        !snapshots[1]
            .settings
            .as_ref()
            .unwrap()
            .webhook_flags
            .as_ref()
            .unwrap()
            .qbo_webhook_sync_enabled
    );
    assert!(
        snapshots[1]
            .settings
            .as_ref()
            .unwrap()
            .import_settings
            .is_some(),
        "a snapshot is complete, not a diff"
    );
    stack.stop().await;
}

/// #6: an ORG_SETTING webhook the Fyle sandbox sends to the subscription ConnectFyle
/// registered travels ingest → `fyle.org-settings.v1` → mapping, which stores the regional
/// settings on the workspace and publishes them with a new snapshot; the same settings again
/// change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fyle_org_setting_webhook_stores_the_regional_settings_on_the_workspace() {
    use crate::{
        fyle_connection::{connected_workspace, demo_sandbox},
        fyle_reconcile::webhooks_only_stack,
    };

    let sb = demo_sandbox().await;
    let stack = webhooks_only_stack(&sb).await;
    let workspace_id = connected_workspace(&stack, &sb).await;
    let get = || async {
        stack
            .mapping
            .clone()
            .get_workspace(GetWorkspaceRequest { workspace_id })
            .await
            .unwrap()
            .into_inner()
    };
    // ConnectFyle registers the subscription in the background: wait for it.
    attrsync_e2e::eventually(
        Duration::from_secs(60),
        "the webhook subscription",
        || async {
            Ok((sb
                .fyle()
                .count(attrsync_sandbox::DEMO_ORG_ID, "subscriptions")
                > 0)
            .then_some(()))
        },
    )
    .await
    .unwrap();
    let before = get().await.version;
    let regional = |timezone: &str| serde_json::json!({"locale": {"date_format": "MM/DD/YYYY", "timezone": timezone}});
    // The same settings twice, then others: one partition keeps them in order, so once the
    // last is stored the repeat has been consumed too.
    for timezone in ["America/New_York", "America/New_York", "Europe/Paris"] {
        sb.fyle()
            .emit(
                attrsync_sandbox::DEMO_ORG_ID,
                "ORG_SETTING",
                "UPDATED",
                serde_json::json!({"regional_settings": regional(timezone)}),
                None,
            )
            .unwrap();
    }
    let (stored, version) =
        attrsync_e2e::eventually(Duration::from_secs(60), "the last org settings", || async {
            let snap = get().await;
            let settings: serde_json::Value =
                serde_json::from_str(&snap.workspace.unwrap().org_settings_json)?;
            Ok(
                (settings["regional_settings"]["locale"]["timezone"] == "Europe/Paris")
                    .then_some((settings, snap.version)),
            )
        })
        .await
        .unwrap();
    assert_eq!(
        stored,
        serde_json::json!({"regional_settings": regional("Europe/Paris")})
    );
    assert_eq!(
        version,
        before + 2,
        "two changes, two snapshots: the repeated settings published nothing"
    );
    stack.stop().await;
    sb.stop().await;
}
