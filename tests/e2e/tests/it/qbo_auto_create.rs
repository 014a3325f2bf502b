//! Auto-creating QBO entities from Fyle values against the QBO sandbox, with the real
//! PostgreSQL and Kafka: a Fyle merchant becomes one QBO vendor and an `auto_created` VENDOR
//! row (with the event for mapping), however often its change is delivered; an existing vendor
//! of the name is linked, not duplicated; nothing is created with the settings off; and
//! `CreateEntity` creates or links one employee or vendor, refusing a name another list holds.

use std::time::Duration;

use attrsync_e2e::{TestStack, eventually, qbo::QboSyncHandle};
use attrsync_kafka::{
    envelope,
    topics::{self, TopicPayload as _},
};
use attrsync_proto::{
    Payload,
    v1::{
        ChangeKind, ConnectQboRequest, CreateEntityRequest, DestinationAttribute,
        EmployeeFieldMapping, ExpenseAttributeChange, ExpenseAttributesChanged,
        FyleAttributeAutoCreated, GetWorkspaceRequest, ImportSettings,
        ListDestinationAttributesRequest,
    },
};
use attrsync_sandbox::{Sandbox, SandboxConfig, SandboxHandle, Seed};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
use serde_json::{Value, json};

use crate::kafka_reader::read_until;

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

/// A stack, a qbo-sync on `sb`, a workspace of `REALM` connected, with these import settings
/// in qbo-sync's projection.
async fn workspace_with(
    sb: &SandboxHandle,
    import: ImportSettings,
) -> (TestStack, QboSyncHandle, i64) {
    let stack = TestStack::start().await.unwrap();
    let qbo = stack
        .start_qbo_sync(sb.qbo_url(), Vec::new())
        .await
        .unwrap();
    let (workspace_id, _) = stack
        .create_workspace_with_realm(Some(REALM))
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
    // mapping has no UpdateImportSettings yet: its snapshot, with the settings, published as
    // a newer version straight onto settings.workspaces.v1, as mapping would.
    let mut snapshot = stack
        .mapping
        .clone()
        .get_workspace(GetWorkspaceRequest { workspace_id })
        .await
        .unwrap()
        .into_inner();
    snapshot.version += 1000;
    snapshot
        .settings
        .get_or_insert_with(Default::default)
        .import_settings = Some(import);
    let version = snapshot.version;
    stack
        .publish_directly(topics::WORKSPACE_SETTINGS, workspace_id, snapshot)
        .await
        .unwrap();
    eventually(WAIT, "the settings in qbo-sync's projection", || async {
        let n = scalar(
            &stack,
            &format!(
                "SELECT count(*) AS n FROM workspace_projection \
                 WHERE workspace_id = {workspace_id} AND version = {version}"
            ),
        )
        .await?;
        Ok((n == 1).then_some(()))
    })
    .await
    .unwrap();
    (stack, qbo, workspace_id)
}

fn merchants_on() -> ImportSettings {
    ImportSettings {
        auto_create_merchants_as_vendors: true,
        auto_create_destination_entity: true,
        employee_field_mapping: EmployeeFieldMapping::Vendor as i32,
        ..Default::default()
    }
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// One number from qbo-sync's schema.
async fn scalar(stack: &TestStack, sql: &str) -> anyhow::Result<i64> {
    let url = attrsync_db::url_with_schema(&stack.database.url, "qbo_sync")?;
    let mut conn = AsyncPgConnection::establish(&url).await?;
    let count: Count = diesel::sql_query(sql).get_result(&mut conn).await?;
    Ok(count.n)
}

fn merchant(name: &str, kind: ChangeKind) -> ExpenseAttributesChanged {
    ExpenseAttributesChanged {
        changes: vec![ExpenseAttributeChange {
            attribute_type: "MERCHANT".into(),
            source_id: "225221".into(),
            value: name.into(),
            active: true,
            kind: kind as i32,
            display_name: "Merchant".into(),
            ..Default::default()
        }],
        origin: "webhook".into(),
    }
}

/// Every `entity` of `REALM` in the sandbox with this name (any case, active or not), read
/// over QBO's query API.
pub(crate) async fn named(sb: &SandboxHandle, entity: &str, name: &str) -> Vec<Value> {
    let statement = format!("select * from {entity} where Active in (true, false) maxresults 1000");
    let answer: Value = reqwest::Client::new()
        .get(format!(
            "{}/v3/company/{REALM}/query",
            sb.qbo_url().trim_end_matches('/')
        ))
        .query(&[("query", statement.as_str())])
        .bearer_auth(sb.qbo().access_token(REALM))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["QueryResponse"][entity]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            e["DisplayName"]
                .as_str()
                .is_some_and(|n| n.trim_end_matches(" (deleted)").eq_ignore_ascii_case(name))
        })
        .collect()
}

async fn rows(
    qbo: &QboSyncHandle,
    workspace_id: i64,
    attribute_type: &str,
) -> Vec<DestinationAttribute> {
    qbo.client
        .clone()
        .list_destination_attributes(ListDestinationAttributesRequest {
            workspace_id,
            attribute_type: Some(attribute_type.into()),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .attributes
}

async fn vendor_row(qbo: &QboSyncHandle, workspace_id: i64, name: &str) -> DestinationAttribute {
    eventually(WAIT, "the VENDOR row", || async {
        Ok(rows(qbo, workspace_id, "VENDOR")
            .await
            .into_iter()
            .find(|r| r.value.eq_ignore_ascii_case(name)))
    })
    .await
    .unwrap()
}

/// Waits until the expense-attribute consumer has handled `n` messages and no create waits.
async fn settled(stack: &TestStack, qbo: &QboSyncHandle, n: u64) {
    let progress = qbo
        .running
        .consumer(topics::EXPENSE_ATTRIBUTES_CHANGED)
        .expect("qbo-sync consumes sync.expense-attributes.v1")
        .clone();
    eventually(
        WAIT,
        "the changes handled and no create waiting",
        || async {
            if progress.handled() < n {
                return Ok(None);
            }
            let waiting = scalar(
                stack,
                "SELECT count(*) AS n FROM qbo_pending_creates WHERE status = 'PENDING'",
            )
            .await?;
            Ok((waiting == 0).then_some(()))
        },
    )
    .await
    .unwrap();
}

async fn auto_created_events(stack: &TestStack, at_least: usize) -> Vec<FyleAttributeAutoCreated> {
    let messages = read_until(
        &stack.topic(topics::FYLE_ATTRIBUTE_AUTO_CREATED),
        WAIT,
        |seen| seen.len() >= at_least,
    )
    .await
    .unwrap();
    messages
        .iter()
        .filter_map(|m| match envelope::decode(&m.payload).ok()?.payload {
            Some(Payload::FyleAttributeAutoCreated(e)) => Some(e),
            _ => None,
        })
        .collect()
}

/// mapping's mapping of a Fyle value, once it exists.
async fn mapped(
    stack: &TestStack,
    workspace_id: i64,
    source_type: &str,
    source_id: &str,
) -> attrsync_proto::v1::Mapping {
    eventually(WAIT, "the Fyle value mapped", || async {
        Ok(crate::mapping_auto::mapping_of(stack, workspace_id, source_type, source_id).await)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merchant_becomes_one_qbo_vendor_however_often_its_change_is_delivered() {
    let sb = sandbox().await;
    let (stack, qbo, workspace_id) = workspace_with(&sb, merchants_on()).await;
    // A quote in the name: the lookup's DisplayName literal must be escaped.
    let name = "O'Hara's Auto Café";
    let first = envelope::new(
        workspace_id,
        "fyle-sync",
        attrsync_proto::time::now(),
        merchant(name, ChangeKind::Created).into_payload(),
    );
    publish_envelope(&stack, &first).await;
    let row = vendor_row(&qbo, workspace_id, name).await;
    assert!(row.auto_created, "{row:?}");
    assert!(row.active);
    let in_qbo = named(&sb, "Vendor", name).await;
    assert_eq!(in_qbo.len(), 1, "{in_qbo:?}");
    assert_eq!(in_qbo[0]["Id"], row.destination_id.as_str());
    let events = auto_created_events(&stack, 1).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].source_attribute_type, "MERCHANT");
    assert_eq!(events[0].source_id, "225221");
    assert_eq!(events[0].destination_attribute_type, "VENDOR");
    assert_eq!(events[0].destination_id, row.destination_id);
    assert!(events[0].created);
    // mapping maps the merchant to the vendor created for it, and marks the mapping so.
    let mapping = mapped(&stack, workspace_id, "MERCHANT", "225221").await;
    assert_eq!(mapping.destination_id, row.destination_id);
    assert!(mapping.auto_created, "{mapping:?}");

    // The same envelope again (a redelivery), another envelope for the same value, and a Fyle
    // value differing only in case (QBO names are case-insensitive: linked, not created).
    publish_envelope(&stack, &first).await;
    stack
        .publish_all_directly(
            topics::EXPENSE_ATTRIBUTES_CHANGED,
            workspace_id,
            vec![
                merchant(name, ChangeKind::Updated),
                merchant(&name.to_uppercase(), ChangeKind::Created),
            ],
        )
        .await
        .unwrap();
    settled(&stack, &qbo, 4).await;
    assert_eq!(
        named(&sb, "Vendor", name).await.len(),
        1,
        "no second vendor"
    );
    assert_eq!(
        rows(&qbo, workspace_id, "VENDOR")
            .await
            .iter()
            .filter(|r| r.value.eq_ignore_ascii_case(name))
            .count(),
        1
    );
    // A later merchant is the barrier: every event before it reached the topic by then.
    stack
        .publish_directly(
            topics::EXPENSE_ATTRIBUTES_CHANGED,
            workspace_id,
            merchant("Barrier Books", ChangeKind::Created),
        )
        .await
        .unwrap();
    vendor_row(&qbo, workspace_id, "Barrier Books").await;
    let events = auto_created_events(&stack, 3).await;
    let for_name: Vec<_> = events
        .iter()
        .filter(|e| e.destination_id == row.destination_id)
        .collect();
    assert_eq!(for_name.len(), 2, "{events:?}");
    assert!(for_name[0].created && for_name[0].source_value == name);
    assert!(
        !for_name[1].created,
        "the case variant is linked: {events:?}"
    );
    assert_eq!(for_name[1].source_value, name.to_uppercase());
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_vendor_of_the_name_is_linked_and_an_employee_becomes_a_vendor() {
    let sb = sandbox().await;
    let existing = sb
        .qbo()
        .create(REALM, "Vendor", json!({"DisplayName": "Existing Supplies"}))
        .unwrap();
    let (stack, qbo, workspace_id) = workspace_with(&sb, merchants_on()).await;
    stack
        .publish_all_directly(
            topics::EXPENSE_ATTRIBUTES_CHANGED,
            workspace_id,
            vec![
                merchant("existing supplies", ChangeKind::Created),
                ExpenseAttributesChanged {
                    changes: vec![ExpenseAttributeChange {
                        attribute_type: "EMPLOYEE".into(),
                        source_id: "ouJSY9XI9s9k".into(),
                        value: "ada@example.com".into(),
                        active: true,
                        kind: ChangeKind::Created as i32,
                        display_name: "Employee".into(),
                        detail_json: r#"{"full_name": "Ada Lovelace", "user_id": "usq"}"#.into(),
                        ..Default::default()
                    }],
                    origin: "webhook".into(),
                },
            ],
        )
        .await
        .unwrap();
    let linked = vendor_row(&qbo, workspace_id, "Existing Supplies").await;
    assert_eq!(linked.destination_id, existing["Id"].as_str().unwrap());
    assert!(!linked.auto_created, "linked, not created: {linked:?}");
    assert_eq!(named(&sb, "Vendor", "Existing Supplies").await.len(), 1);
    let ada = vendor_row(&qbo, workspace_id, "Ada Lovelace").await;
    assert!(ada.auto_created);
    let in_qbo = named(&sb, "Vendor", "Ada Lovelace").await;
    assert_eq!(in_qbo.len(), 1);
    assert_eq!(in_qbo[0]["PrimaryEmailAddr"]["Address"], "ada@example.com");
    let events = auto_created_events(&stack, 2).await;
    let link = events
        .iter()
        .find(|e| e.source_attribute_type == "MERCHANT")
        .unwrap();
    assert!(!link.created);
    assert_eq!(link.destination_id, linked.destination_id);
    let employee = events
        .iter()
        .find(|e| e.source_attribute_type == "EMPLOYEE")
        .unwrap();
    assert!(employee.created);
    assert_eq!(employee.source_value, "ada@example.com");
    let linked_mapping = mapped(&stack, workspace_id, "MERCHANT", &link.source_id).await;
    assert!(!linked_mapping.auto_created, "linked, not created");
    let ada_mapping = mapped(&stack, workspace_id, "EMPLOYEE", "ouJSY9XI9s9k").await;
    assert!(ada_mapping.auto_created);
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_created_when_the_settings_do_not_ask_for_it() {
    let sb = sandbox().await;
    let (stack, qbo, workspace_id) = workspace_with(
        &sb,
        ImportSettings {
            // Employees only, and as nothing: merchants are not covered.
            auto_create_destination_entity: true,
            ..Default::default()
        },
    )
    .await;
    let before = sb.stats().total;
    stack
        .publish_directly(
            topics::EXPENSE_ATTRIBUTES_CHANGED,
            workspace_id,
            merchant("Not Wanted Ltd", ChangeKind::Created),
        )
        .await
        .unwrap();
    settled(&stack, &qbo, 1).await;
    let recorded = scalar(&stack, "SELECT count(*) AS n FROM qbo_pending_creates")
        .await
        .unwrap();
    assert_eq!(recorded, 0);
    // Rounds of the task pass; QBO is not called and nothing appears.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sb.stats().total, before, "no QBO request");
    assert!(named(&sb, "Vendor", "Not Wanted Ltd").await.is_empty());
    assert!(rows(&qbo, workspace_id, "VENDOR").await.is_empty());
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_entity_creates_or_links_one_entity_and_refuses_a_name_another_list_holds() {
    let sb = sandbox().await;
    let (stack, qbo, workspace_id) = workspace_with(&sb, ImportSettings::default()).await;
    let create = |attribute_type: &str, name: &str| CreateEntityRequest {
        workspace_id,
        attribute_type: attribute_type.into(),
        display_name: name.into(),
        email: Some("grace@example.com".into()),
        currency: None,
    };
    let grace = qbo
        .client
        .clone()
        .create_entity(create("EMPLOYEE", "Grace Hopper"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grace.attribute_type, "EMPLOYEE");
    assert_eq!(grace.value, "Grace Hopper");
    assert!(grace.auto_created && grace.active);
    let in_qbo = named(&sb, "Employee", "Grace Hopper").await;
    assert_eq!(in_qbo.len(), 1);
    assert_eq!(in_qbo[0]["Id"], grace.destination_id.as_str());
    // Again: found by its name, not created twice.
    let again = qbo
        .client
        .clone()
        .create_entity(create("employee", "grace hopper"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.id, grace.id);
    assert_eq!(named(&sb, "Employee", "Grace Hopper").await.len(), 1);

    // A customer holds the name: QBO answers 6240, and a customer is no vendor.
    sb.qbo()
        .create(
            REALM,
            "Customer",
            json!({"DisplayName": "Harbor Shared Name"}),
        )
        .unwrap();
    let refused = qbo
        .client
        .clone()
        .create_entity(create("VENDOR", "Harbor Shared Name"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::AlreadyExists, "{refused:?}");
    assert!(named(&sb, "Vendor", "Harbor Shared Name").await.is_empty());
    let bad = qbo
        .client
        .clone()
        .create_entity(create("CUSTOMER", "Anyone"))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    stack.stop().await;
    sb.stop().await;
}

/// Writes `envelope` as it is (same event id) onto this stack's expense-attributes topic.
async fn publish_envelope(stack: &TestStack, envelope: &attrsync_proto::v1::Envelope) {
    let config = attrsync_config::KafkaConfig {
        bootstrap: attrsync_e2e::kafka_bootstrap(),
        topic_prefix: stack.topic_prefix.clone(),
        group_id: format!("{}writer", stack.topic_prefix),
        partitions: 1,
        replication_factor: 1,
        max_attempts: 3,
        retry_backoff: Duration::from_millis(10),
        max_batch: 200,
    };
    attrsync_kafka::Producer::new(&config)
        .unwrap()
        .publish(topics::EXPENSE_ATTRIBUTES_CHANGED.name(), envelope)
        .await
        .unwrap();
}
