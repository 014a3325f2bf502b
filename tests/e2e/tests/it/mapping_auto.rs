//! Real-time auto-mapping in mapping, over the real stack. End to end across services: a
//! category posted to ingest as a Fyle webhook (→ fyle-sync → `sync.expense-attributes.v1`)
//! and an account created in the QBO sandbox (signed webhook → ingest → qbo-sync's fetch →
//! `sync.destination-attributes.v1`) end as one mapping although their names differ in case,
//! with no scheduled job anywhere; a QBO vendor and then a Fyle employee with the same email
//! end as an employee → vendor mapping. With the change events published directly: an
//! operator's mapping is never overwritten, a mapping error resolves the moment its mapping
//! appears (auto or operator), a deactivated destination flags its mapping, two equal matches
//! map nothing, and redelivered, re-published or stale events change nothing; an employee
//! qbo-sync created a vendor for (`sync.fyle-auto-created.v1`) is mapped to it.

use std::time::Duration;

use attrsync_db::diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
use attrsync_e2e::{TestStack, eventually, qbo::QboSyncHandle};
use attrsync_kafka::topics::{self, Topic, TopicPayload};
use attrsync_proto::v1::{
    AutoMapEmployees, ChangeKind, ConnectQboRequest, CreateWorkspaceRequest,
    DestinationAttributeChange, DestinationAttributesChanged, EmployeeFieldMapping,
    ExpenseAttributeChange, ExpenseAttributesChanged, FyleAttributeAutoCreated, ImportSettings,
    ListMappingErrorsRequest, ListMappingsRequest, Mapping, MappingError, MappingState,
    ReportMappingErrorRequest, UpsertMappingRequest, WorkspaceSettings,
};
use attrsync_sandbox::{QboWebhookConfig, Sandbox, SandboxConfig, SandboxHandle, Seed};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);
const REALM: &str = "9130357766900456";

async fn sandbox() -> SandboxHandle {
    Sandbox::start(SandboxConfig {
        seed: Seed::Demo,
        workers: 1,
        ..SandboxConfig::default()
    })
    .await
    .unwrap()
}

/// The incumbent's defaults as a caller sends them whole, auto-mapping case-insensitively.
pub(crate) fn import_settings() -> ImportSettings {
    ImportSettings {
        charts_of_accounts: vec!["Expense".into()],
        is_sync_after_timestamp_enabled: true,
        map_fyle_cards_qbo_account: true,
        auto_map_case_insensitive: true,
        ..Default::default()
    }
}

/// A workspace with these settings; `realm` connects it to the sandbox's QBO company.
pub(crate) async fn workspace(
    stack: &TestStack,
    realm: Option<&str>,
    import: ImportSettings,
) -> (i64, String) {
    let org = format!("or{}", &ulid::Ulid::new().to_string()[14..]);
    let snapshot = stack
        .mapping
        .clone()
        .create_workspace(CreateWorkspaceRequest {
            name: format!("Workspace of {org}"),
            fyle_org_id: org.clone(),
            qbo_realm_id: realm.map(str::to_owned),
            settings: Some(WorkspaceSettings {
                mapping_settings: Vec::new(),
                import_settings: Some(import),
                webhook_flags: None,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    (snapshot.workspace.unwrap().id, org)
}

/// qbo-sync on `sb`, the workspace connected to `REALM`, the sandbox's webhooks to ingest.
pub(crate) async fn connect_qbo(
    stack: &TestStack,
    sb: &SandboxHandle,
    workspace_id: i64,
) -> QboSyncHandle {
    let qbo = stack
        .start_qbo_sync(sb.qbo_url(), Vec::new())
        .await
        .unwrap();
    qbo.client
        .clone()
        .connect_qbo(ConnectQboRequest {
            workspace_id,
            realm_id: REALM.into(),
            authorization_code: None,
            refresh_token: sb.qbo().refresh_token(REALM),
        })
        .await
        .unwrap();
    sb.set_qbo_webhook(QboWebhookConfig {
        url: Some(format!("{}/webhooks/qbo", stack.ingest_url)),
        batch_window_ms: 50,
        ..QboWebhookConfig::default()
    });
    qbo
}

pub(crate) async fn mappings(
    stack: &TestStack,
    workspace_id: i64,
    source_type: &str,
) -> Vec<Mapping> {
    stack
        .mapping
        .clone()
        .list_mappings(ListMappingsRequest {
            workspace_id,
            source_type: Some(source_type.into()),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .mappings
}

pub(crate) async fn mapping_of(
    stack: &TestStack,
    workspace_id: i64,
    source_type: &str,
    source_id: &str,
) -> Option<Mapping> {
    stack
        .mapping
        .clone()
        .list_mappings(ListMappingsRequest {
            workspace_id,
            source_type: Some(source_type.into()),
            source_id: Some(source_id.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .mappings
        .into_iter()
        .next()
}

async fn errors(stack: &TestStack, workspace_id: i64) -> Vec<MappingError> {
    stack
        .mapping
        .clone()
        .list_mapping_errors(ListMappingErrorsRequest {
            workspace_id,
            include_resolved: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .errors
}

fn fyle_webhook(resource: &str, data: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"action": "CREATED", "resource": resource, "data": data})).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qbo_account_created_in_the_sandbox_maps_to_the_fyle_category_of_the_same_name_in_another_case()
 {
    let sb = sandbox().await;
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, org) = workspace(&stack, Some(REALM), import_settings()).await;
    let _qbo = connect_qbo(&stack, &sb, workspace_id).await;

    // The Fyle category arrives first, through ingest and fyle-sync.
    let response = stack
        .post_fyle_webhook(
            workspace_id,
            &fyle_webhook(
                "CATEGORY",
                json!({"id": 88001, "org_id": org, "name": "Office Snacks", "sub_category": null,
                       "is_enabled": true, "updated_at": "2024-05-02T10:00:00+00:00"}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Then QBO gets the account, spelled in capitals; its webhook is the only trigger.
    let account = sb
        .qbo()
        .create(
            REALM,
            "Account",
            json!({"Name": "OFFICE SNACKS", "AccountType": "Expense"}),
        )
        .unwrap();
    let account_id = account["Id"].as_str().unwrap().to_owned();

    let mapping = eventually(WAIT, "the category auto-mapped to the account", || async {
        Ok(mapping_of(&stack, workspace_id, "CATEGORY", "88001").await)
    })
    .await
    .unwrap();
    assert_eq!(mapping.destination_type, "ACCOUNT");
    assert_eq!(mapping.destination_id, account_id);
    assert_eq!(mapping.source_value, "Office Snacks");
    assert_eq!(mapping.destination_value, "OFFICE SNACKS");
    assert!(mapping.auto_mapped);
    assert_eq!(mapping.state(), MappingState::Ok);
    assert!(mapping.source_active && mapping.destination_active);
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_employee_added_in_fyle_is_auto_mapped_to_the_qbo_vendor_with_the_same_email() {
    let sb = sandbox().await;
    let stack = TestStack::start().await.unwrap();
    let mut import = import_settings();
    import.set_auto_map_employees(AutoMapEmployees::Email);
    import.set_employee_field_mapping(EmployeeFieldMapping::Vendor);
    let (workspace_id, org) = workspace(&stack, Some(REALM), import).await;
    let _qbo = connect_qbo(&stack, &sb, workspace_id).await;

    // The vendor exists in QBO first (its email in another case).
    let vendor = sb
        .qbo()
        .create(
            REALM,
            "Vendor",
            json!({"DisplayName": "Joanna Bloggs Consulting",
                   "PrimaryEmailAddr": {"Address": "Joanna.Bloggs@Example.com"}}),
        )
        .unwrap();
    let vendor_id = vendor["Id"].as_str().unwrap().to_owned();
    // Wait until mapping has seen it, so the employee's event is the one that maps.
    let seen = stack.topic(topics::DESTINATION_ATTRIBUTES_CHANGED);
    crate::kafka_reader::read_until(&seen, WAIT, |messages| !messages.is_empty())
        .await
        .unwrap();

    // Then the employee joins in Fyle.
    let response = stack
        .post_fyle_webhook(
            workspace_id,
            &fyle_webhook(
                "EMPLOYEE",
                json!({"id": "ouJoanna01", "org_id": org, "user_id": "usJ", "code": "E1",
                       "user": {"email": "joanna.bloggs@example.com", "full_name": "Joanna Bloggs"},
                       "is_enabled": true, "has_accepted_invite": true,
                       "updated_at": "2024-05-02T10:00:00+00:00"}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let mapping = eventually(WAIT, "the employee auto-mapped to the vendor", || async {
        Ok(mapping_of(&stack, workspace_id, "EMPLOYEE", "ouJoanna01").await)
    })
    .await
    .unwrap();
    assert_eq!(mapping.destination_type, "VENDOR");
    assert_eq!(mapping.destination_id, vendor_id);
    assert_eq!(mapping.source_value, "joanna.bloggs@example.com");
    assert!(mapping.auto_mapped);
    assert_eq!(mapping.state(), MappingState::Ok);
    stack.stop().await;
    sb.stop().await;
}

pub(crate) fn category(id: &str, value: &str, active: bool) -> ExpenseAttributeChange {
    ExpenseAttributeChange {
        attribute_type: "CATEGORY".into(),
        source_id: id.into(),
        value: value.into(),
        old_value: None,
        active,
        kind: ChangeKind::Created as i32,
        display_name: "Category".into(),
        detail_json: String::new(),
    }
}

pub(crate) fn account(id: &str, value: &str, active: bool) -> DestinationAttributeChange {
    DestinationAttributeChange {
        attribute_type: "ACCOUNT".into(),
        destination_id: id.into(),
        value: value.into(),
        old_value: None,
        active,
        kind: if active {
            ChangeKind::Created
        } else {
            ChangeKind::Deactivated
        } as i32,
        display_name: "Account".into(),
        code: None,
        old_code: None,
        detail_json: json!({"account_type": "Expense"}).to_string(),
    }
}

pub(crate) async fn fyle_side(
    stack: &TestStack,
    workspace_id: i64,
    changes: Vec<ExpenseAttributeChange>,
) {
    stack
        .publish_directly(
            topics::EXPENSE_ATTRIBUTES_CHANGED,
            workspace_id,
            ExpenseAttributesChanged {
                changes,
                origin: "webhook".into(),
            },
        )
        .await
        .unwrap();
}

pub(crate) async fn qbo_side(
    stack: &TestStack,
    workspace_id: i64,
    changes: Vec<DestinationAttributeChange>,
) {
    stack
        .publish_directly(
            topics::DESTINATION_ATTRIBUTES_CHANGED,
            workspace_id,
            DestinationAttributesChanged {
                changes,
                origin: "webhook".into(),
            },
        )
        .await
        .unwrap();
}

/// Publishes one fully formed envelope `times` times (the same event id each time), as a
/// producer retrying a send would.
async fn publish_envelope<P: TopicPayload>(
    stack: &TestStack,
    topic: Topic<P>,
    envelope: &attrsync_proto::v1::Envelope,
    times: usize,
) {
    let producer = stack.direct_producer().unwrap();
    for _ in 0..times {
        producer.publish(topic.name(), envelope).await.unwrap();
    }
}

async fn report(
    stack: &TestStack,
    workspace_id: i64,
    source_id: &str,
    value: &str,
) -> MappingError {
    stack
        .mapping
        .clone()
        .report_mapping_error(ReportMappingErrorRequest {
            workspace_id,
            error_type: "CATEGORY_MAPPING".into(),
            source_type: "CATEGORY".into(),
            source_id: source_id.into(),
            source_value: value.into(),
            destination_type: "ACCOUNT".into(),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_mapping_is_never_overwritten_and_errors_resolve_when_a_mapping_appears() {
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, _) = workspace(&stack, None, import_settings()).await;

    // Two exports failed on unmapped categories.
    let travel_error = report(&stack, workspace_id, "cat-travel", "Travel").await;
    let meals_error = report(&stack, workspace_id, "cat-meals", "Meals").await;
    assert!(!travel_error.is_resolved && !meals_error.is_resolved);

    fyle_side(
        &stack,
        workspace_id,
        vec![
            category("cat-travel", "Travel", true),
            category("cat-meals", "Meals", true),
        ],
    )
    .await;
    qbo_side(
        &stack,
        workspace_id,
        vec![
            account("10", "Staff Meals", true),
            account("11", "travel", true),
        ],
    )
    .await;

    // Auto-mapping maps Travel and resolves its error in the same transaction.
    let travel = eventually(WAIT, "Travel auto-mapped", || async {
        Ok(mapping_of(&stack, workspace_id, "CATEGORY", "cat-travel").await)
    })
    .await
    .unwrap();
    assert_eq!(
        (travel.destination_id.as_str(), travel.auto_mapped),
        ("11", true)
    );
    let resolved = errors(&stack, workspace_id).await;
    let travel_error = resolved
        .iter()
        .find(|e| e.source_id == "cat-travel")
        .unwrap();
    assert!(travel_error.is_resolved);
    assert_eq!(travel_error.resolved_by_mapping_id, Some(travel.id));

    // Meals matches nothing; an operator maps it — which resolves its error too.
    let meals = stack
        .mapping
        .clone()
        .upsert_mapping(UpsertMappingRequest {
            workspace_id,
            source_type: "CATEGORY".into(),
            source_id: "cat-meals".into(),
            destination_type: "ACCOUNT".into(),
            destination_id: "10".into(),
            destination_display_name: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!meals.auto_mapped);
    assert_eq!(meals.destination_value, "Staff Meals");
    let open = stack
        .mapping
        .clone()
        .list_mapping_errors(ListMappingErrorsRequest {
            workspace_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .errors;
    assert!(open.is_empty(), "no open errors left: {open:?}");

    // The operator also overrides the auto-mapping of Travel.
    stack
        .mapping
        .clone()
        .upsert_mapping(UpsertMappingRequest {
            workspace_id,
            source_type: "CATEGORY".into(),
            source_id: "cat-travel".into(),
            destination_type: "ACCOUNT".into(),
            destination_id: "10".into(),
            destination_display_name: None,
        })
        .await
        .unwrap();

    // Exact matches appear in QBO, and the Fyle values change: nothing overwrites an
    // operator's mapping. A sentinel pair proves both consumers got past these events.
    qbo_side(
        &stack,
        workspace_id,
        vec![account("12", "Meals", true), account("13", "Travel", true)],
    )
    .await;
    fyle_side(
        &stack,
        workspace_id,
        vec![
            category("cat-travel", "Travel", true),
            category("cat-meals", "Meals", true),
        ],
    )
    .await;
    qbo_side(&stack, workspace_id, vec![account("99", "Sentinel", true)]).await;
    fyle_side(
        &stack,
        workspace_id,
        vec![category("cat-sentinel", "sentinel", true)],
    )
    .await;
    eventually(WAIT, "the sentinel mapped", || async {
        Ok(mapping_of(&stack, workspace_id, "CATEGORY", "cat-sentinel").await)
    })
    .await
    .unwrap();
    let meals_now = mapping_of(&stack, workspace_id, "CATEGORY", "cat-meals")
        .await
        .unwrap();
    let travel_now = mapping_of(&stack, workspace_id, "CATEGORY", "cat-travel")
        .await
        .unwrap();
    assert_eq!(
        (meals_now.destination_id.as_str(), meals_now.auto_mapped),
        ("10", false)
    );
    assert_eq!(
        (travel_now.destination_id.as_str(), travel_now.auto_mapped),
        ("10", false)
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivated_destination_flags_its_mapping_and_two_equal_matches_map_nothing() {
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, _) = workspace(&stack, None, import_settings()).await;
    qbo_side(
        &stack,
        workspace_id,
        vec![
            account("20", "Fuel", true),
            account("21", "PARKING", true),
            account("22", "parking", true),
        ],
    )
    .await;
    fyle_side(
        &stack,
        workspace_id,
        vec![
            category("cat-fuel", "FUEL", true),
            category("cat-parking", "Parking", true),
        ],
    )
    .await;
    let fuel = eventually(WAIT, "Fuel auto-mapped", || async {
        Ok(mapping_of(&stack, workspace_id, "CATEGORY", "cat-fuel").await)
    })
    .await
    .unwrap();
    assert_eq!(fuel.state(), MappingState::Ok);
    assert!(
        mapping_of(&stack, workspace_id, "CATEGORY", "cat-parking")
            .await
            .is_none(),
        "Parking matches PARKING and parking equally: not mapped"
    );

    // QBO deactivates the account: the mapping stays, flagged.
    qbo_side(&stack, workspace_id, vec![account("20", "Fuel", false)]).await;
    let flagged = eventually(WAIT, "the mapping flagged", || async {
        Ok(mapping_of(&stack, workspace_id, "CATEGORY", "cat-fuel")
            .await
            .filter(|m| m.state() == MappingState::DestinationInactive))
    })
    .await
    .unwrap();
    assert!(!flagged.destination_active && flagged.source_active);
    assert_eq!(flagged.id, fuel.id, "kept, not silently replaced");
    let only_flagged = stack
        .mapping
        .clone()
        .list_mappings(ListMappingsRequest {
            workspace_id,
            only_flagged: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .mappings;
    assert_eq!(
        only_flagged.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![fuel.id]
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_republished_and_stale_events_change_nothing() {
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, _) = workspace(&stack, None, import_settings()).await;
    let category_envelope = attrsync_kafka::envelope::new(
        workspace_id,
        "fyle-sync",
        attrsync_proto::time::now(),
        ExpenseAttributesChanged {
            changes: vec![category("cat-hotel", "Hotel", true)],
            origin: "webhook".into(),
        }
        .into_payload(),
    );
    let account_envelope = attrsync_kafka::envelope::new(
        workspace_id,
        "qbo-sync",
        attrsync_proto::time::now(),
        DestinationAttributesChanged {
            changes: vec![account("30", "HOTEL", true)],
            origin: "webhook".into(),
        }
        .into_payload(),
    );
    publish_envelope(
        &stack,
        topics::EXPENSE_ATTRIBUTES_CHANGED,
        &category_envelope,
        1,
    )
    .await;
    publish_envelope(
        &stack,
        topics::DESTINATION_ATTRIBUTES_CHANGED,
        &account_envelope,
        1,
    )
    .await;
    let before = eventually(WAIT, "Hotel auto-mapped", || async {
        Ok(mapping_of(&stack, workspace_id, "CATEGORY", "cat-hotel").await)
    })
    .await
    .unwrap();
    report(&stack, workspace_id, "cat-hotel", "Hotel").await;
    let errors_before = errors(&stack, workspace_id).await;
    assert!(
        errors_before.iter().all(|e| e.is_resolved),
        "answered by the mapping at once"
    );

    // The same envelopes again, twice (same event ids) …
    publish_envelope(
        &stack,
        topics::EXPENSE_ATTRIBUTES_CHANGED,
        &category_envelope,
        2,
    )
    .await;
    publish_envelope(
        &stack,
        topics::DESTINATION_ATTRIBUTES_CHANGED,
        &account_envelope,
        2,
    )
    .await;
    // … the same changes under new envelopes …
    fyle_side(
        &stack,
        workspace_id,
        vec![category("cat-hotel", "Hotel", true)],
    )
    .await;
    qbo_side(&stack, workspace_id, vec![account("30", "HOTEL", true)]).await;
    // … and an hour-old rename and deactivation, replayed late.
    let stale_at = attrsync_proto::time::to_proto(chrono::Utc::now() - chrono::Duration::hours(1));
    let stale_category = attrsync_kafka::envelope::new(
        workspace_id,
        "fyle-sync",
        stale_at,
        ExpenseAttributesChanged {
            changes: vec![category("cat-hotel", "Lodging", true)],
            origin: "webhook".into(),
        }
        .into_payload(),
    );
    let stale_account = attrsync_kafka::envelope::new(
        workspace_id,
        "qbo-sync",
        stale_at,
        DestinationAttributesChanged {
            changes: vec![account("30", "HOTEL", false)],
            origin: "webhook".into(),
        }
        .into_payload(),
    );
    publish_envelope(
        &stack,
        topics::EXPENSE_ATTRIBUTES_CHANGED,
        &stale_category,
        1,
    )
    .await;
    publish_envelope(
        &stack,
        topics::DESTINATION_ATTRIBUTES_CHANGED,
        &stale_account,
        1,
    )
    .await;
    // Sentinels: once they are mapped, both consumers are past everything above.
    qbo_side(&stack, workspace_id, vec![account("98", "Sentinel", true)]).await;
    fyle_side(
        &stack,
        workspace_id,
        vec![category("cat-sentinel", "Sentinel", true)],
    )
    .await;
    eventually(WAIT, "the sentinel mapped", || async {
        Ok(mapping_of(&stack, workspace_id, "CATEGORY", "cat-sentinel").await)
    })
    .await
    .unwrap();

    let after = mapping_of(&stack, workspace_id, "CATEGORY", "cat-hotel")
        .await
        .unwrap();
    assert_eq!(
        after, before,
        "the mapping, both sides' values and states, unchanged"
    );
    assert_eq!(after.source_value, "Hotel", "the stale rename was ignored");
    assert!(
        after.destination_active,
        "the stale deactivation was ignored"
    );
    assert_eq!(mappings(&stack, workspace_id, "CATEGORY").await.len(), 2);
    assert_eq!(errors(&stack, workspace_id).await, errors_before);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_employee_qbo_sync_created_a_vendor_for_is_mapped_to_it_marked_auto_created_until_an_operator_remaps_it()
 {
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, _) = workspace(&stack, None, import_settings()).await;
    let auto_created = |source_id: &str, destination_id: &str| FyleAttributeAutoCreated {
        source_attribute_type: "EMPLOYEE".into(),
        source_id: source_id.into(),
        source_value: format!("{source_id}@example.com"),
        destination_attribute_type: "VENDOR".into(),
        destination_id: destination_id.into(),
        destination_value: format!("Vendor {destination_id}"),
        created: true,
    };
    stack
        .publish_directly(
            topics::FYLE_ATTRIBUTE_AUTO_CREATED,
            workspace_id,
            auto_created("ou-new", "501"),
        )
        .await
        .unwrap();
    let mapping = eventually(WAIT, "the employee mapped to its new vendor", || async {
        Ok(mapping_of(&stack, workspace_id, "EMPLOYEE", "ou-new").await)
    })
    .await
    .unwrap();
    assert_eq!(
        (
            mapping.destination_type.as_str(),
            mapping.destination_id.as_str()
        ),
        ("VENDOR", "501")
    );
    assert!(mapping.auto_mapped);
    assert!(mapping.auto_created, "qbo-sync created the vendor for it");
    assert_eq!(mapping.destination_display_name, "vendor");
    assert_eq!(
        mapping.state(),
        MappingState::UnknownAttribute,
        "until the change events of both sides arrive"
    );

    // A second creation for the same employee (another vendor) does not replace the first.
    stack
        .publish_directly(
            topics::FYLE_ATTRIBUTE_AUTO_CREATED,
            workspace_id,
            auto_created("ou-new", "502"),
        )
        .await
        .unwrap();
    stack
        .publish_directly(
            topics::FYLE_ATTRIBUTE_AUTO_CREATED,
            workspace_id,
            auto_created("ou-sentinel", "599"),
        )
        .await
        .unwrap();
    eventually(WAIT, "the sentinel mapped", || async {
        Ok(mapping_of(&stack, workspace_id, "EMPLOYEE", "ou-sentinel").await)
    })
    .await
    .unwrap();
    let still = mapping_of(&stack, workspace_id, "EMPLOYEE", "ou-new")
        .await
        .unwrap();
    assert_eq!(still.destination_id, "501");
    assert!(still.auto_created);

    // An operator points the employee at another vendor: that mapping is theirs, not an
    // auto-created entity's.
    fyle_side(
        &stack,
        workspace_id,
        vec![ExpenseAttributeChange {
            attribute_type: "EMPLOYEE".into(),
            source_id: "ou-new".into(),
            value: "ou-new@example.com".into(),
            active: true,
            kind: ChangeKind::Created as i32,
            display_name: "Employee".into(),
            ..Default::default()
        }],
    )
    .await;
    qbo_side(
        &stack,
        workspace_id,
        vec![DestinationAttributeChange {
            attribute_type: "VENDOR".into(),
            destination_id: "777".into(),
            value: "Chosen Vendor".into(),
            active: true,
            kind: ChangeKind::Created as i32,
            display_name: "vendor".into(),
            ..Default::default()
        }],
    )
    .await;
    let remapped = eventually(WAIT, "the operator's mapping", || async {
        Ok(stack
            .mapping
            .clone()
            .upsert_mapping(UpsertMappingRequest {
                workspace_id,
                source_type: "EMPLOYEE".into(),
                source_id: "ou-new".into(),
                destination_type: "VENDOR".into(),
                destination_id: "777".into(),
                destination_display_name: None,
            })
            .await
            .ok()
            .map(tonic::Response::into_inner))
    })
    .await
    .unwrap();
    assert_eq!(remapped.destination_id, "777");
    assert!(
        !remapped.auto_mapped && !remapped.auto_created,
        "{remapped:?}"
    );
    stack.stop().await;
}

/// A pull's envelope can carry thousands of changes (a field's 5,000 options): each is applied
/// whole, set-based, with the last change of a key repeated in it winning, and every source
/// in it is auto-mapped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_of_thousands_of_changes_are_applied_whole_and_the_last_change_of_a_key_wins() {
    const N: usize = 2000;
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, _) = workspace(&stack, None, import_settings()).await;
    let mut accounts: Vec<DestinationAttributeChange> = (0..N)
        .map(|i| account(&format!("{}", 1000 + i), &format!("Account {i}"), true))
        .collect();
    accounts.push(account("30", "Old Lodging", true));
    accounts.push(account("30", "Lodging", true));
    qbo_side(&stack, workspace_id, accounts).await;
    let mut categories: Vec<ExpenseAttributeChange> = (0..N)
        .map(|i| category(&format!("cat-{i}"), &format!("account {i}"), true))
        .collect();
    categories.push(category("cat-lodging", "Old Lodging", true));
    categories.push(category("cat-lodging", "Lodging", true));
    fyle_side(&stack, workspace_id, categories).await;

    let lodging = eventually(
        WAIT,
        "the repeated key mapped by its last value",
        || async { Ok(mapping_of(&stack, workspace_id, "CATEGORY", "cat-lodging").await) },
    )
    .await
    .unwrap();
    assert_eq!(lodging.destination_id, "30");
    assert_eq!(
        (
            lodging.source_value.as_str(),
            lodging.destination_value.as_str()
        ),
        ("Lodging", "Lodging")
    );
    let url = attrsync_db::url_with_schema(&stack.database.url, "mapping").unwrap();
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    #[derive(diesel::QueryableByName)]
    struct Counts {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        sources: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        destinations: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        mapped: i64,
    }
    let counts: Counts = diesel::sql_query(
        "SELECT (SELECT count(*) FROM source_attributes WHERE workspace_id = $1) AS sources, \
                (SELECT count(*) FROM destination_attributes WHERE workspace_id = $1) \
                  AS destinations, \
                (SELECT count(*) FROM mappings WHERE workspace_id = $1 \
                   AND source_type = 'CATEGORY' AND destination_type = 'ACCOUNT' \
                   AND substr(source_id, 5) = (destination_id::int - 1000)::text) AS mapped",
    )
    .bind::<diesel::sql_types::BigInt, _>(workspace_id)
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        (counts.sources, counts.destinations, counts.mapped),
        (N as i64 + 1, N as i64 + 1, N as i64),
        "every row stored once, every category mapped to its account"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fyle_changes_of_two_workspaces_fetched_together_are_judged_in_order_and_mapped_apart() {
    let stack = TestStack::start().await.unwrap();
    let (a, _) = workspace(&stack, None, import_settings()).await;
    let (b, _) = workspace(&stack, None, import_settings()).await;
    qbo_side(&stack, a, vec![account("30", "HOTEL", true)]).await;
    qbo_side(&stack, b, vec![account("31", "MOTEL", true)]).await;
    let now = chrono::Utc::now();
    let at = |seconds_ago: i64| {
        attrsync_proto::time::to_proto(now - chrono::Duration::seconds(seconds_ago))
    };
    let envelope = |workspace_id, occurred_at, changes| {
        attrsync_kafka::envelope::new(
            workspace_id,
            "fyle-sync",
            occurred_at,
            ExpenseAttributesChanged {
                changes,
                origin: "webhook".into(),
            }
            .into_payload(),
        )
    };
    // Padding around them, all sent at once, so they are fetched and applied together.
    let padding = |from: usize| {
        (from..from + 10)
            .map(|n| envelope(b, at(60), vec![category(&format!("pad-{n}"), "Pad", true)]))
            .collect::<Vec<_>>()
    };
    let mut envelopes = padding(0);
    envelopes.extend([
        envelope(a, at(30), vec![category("cat-1", "Hotel", true)]),
        // The same key in another workspace is another row.
        envelope(b, at(30), vec![category("cat-1", "Motel", true)]),
        // Older than the envelope before it in the same batch: stale.
        envelope(a, at(40), vec![category("cat-1", "Lodging", true)]),
        // Renamed by a later envelope in the same batch: the later one stands.
        envelope(a, at(30), vec![category("cat-2", "Fuel", true)]),
        envelope(a, at(20), vec![category("cat-2", "Fuel card", true)]),
        // Each named like the other workspace's account: matched among its own, so unmapped.
        envelope(a, at(30), vec![category("cat-3", "Motel", true)]),
        envelope(b, at(30), vec![category("cat-4", "Hotel", true)]),
    ]);
    envelopes.extend(padding(10));
    let producer = stack.direct_producer().unwrap();
    let topic = topics::EXPENSE_ATTRIBUTES_CHANGED.name();
    for sent in
        futures::future::join_all(envelopes.iter().map(|e| producer.publish(topic, e))).await
    {
        sent.unwrap();
    }

    let hotel = eventually(WAIT, "a's cat-1 mapped", || async {
        Ok(mapping_of(&stack, a, "CATEGORY", "cat-1").await)
    })
    .await
    .unwrap();
    let motel = eventually(WAIT, "b's cat-1 mapped", || async {
        Ok(mapping_of(&stack, b, "CATEGORY", "cat-1").await)
    })
    .await
    .unwrap();
    assert_eq!(
        (hotel.source_value.as_str(), hotel.destination_id.as_str()),
        ("Hotel", "30"),
        "a's own value, the stale rename ignored, mapped to a's account"
    );
    assert_eq!(
        (motel.source_value.as_str(), motel.destination_id.as_str()),
        ("Motel", "31")
    );

    use attrsync_db::diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
    #[derive(diesel::QueryableByName, Debug, PartialEq)]
    struct Source {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        workspace_id: i64,
        #[diesel(sql_type = diesel::sql_types::Text)]
        source_id: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        value: String,
    }
    let url = attrsync_db::url_with_schema(&stack.database.url, "mapping").unwrap();
    let sources: Vec<Source> = eventually(WAIT, "every envelope applied", || async {
        let mut conn = AsyncPgConnection::establish(&url).await?;
        let rows: Vec<Source> = diesel::sql_query(
            "SELECT workspace_id, source_id, value FROM source_attributes \
             WHERE source_id LIKE 'cat-%' OR source_id = 'pad-19' ORDER BY 1, 2",
        )
        .load(&mut conn)
        .await?;
        Ok((rows.len() == 6).then_some(rows))
    })
    .await
    .unwrap();
    let source = |workspace_id, source_id: &str, value: &str| Source {
        workspace_id,
        source_id: source_id.into(),
        value: value.into(),
    };
    let mut expected = vec![
        source(a, "cat-1", "Hotel"),
        source(a, "cat-2", "Fuel card"),
        source(a, "cat-3", "Motel"),
        source(b, "cat-1", "Motel"),
        source(b, "cat-4", "Hotel"),
        source(b, "pad-19", "Pad"),
    ];
    expected.sort_by(|x, y| (x.workspace_id, &x.source_id).cmp(&(y.workspace_id, &y.source_id)));
    assert_eq!(sources, expected);
    // Judged in the same transaction as the rows were written, so already decided.
    assert!(mapping_of(&stack, a, "CATEGORY", "cat-3").await.is_none());
    assert!(mapping_of(&stack, b, "CATEGORY", "cat-4").await.is_none());
    // The batch path did this: no batch transaction failed (a key written twice by one upsert
    // would have), and far fewer transactions than the 29 envelopes committed them.
    assert_eq!(
        stack
            .failed_batches(topics::EXPENSE_ATTRIBUTES_CHANGED)
            .await
            .unwrap(),
        0
    );
    assert!(crate::fyle_webhooks::transactions(&stack, "mapping").await < 20);
    stack.stop().await;
}
