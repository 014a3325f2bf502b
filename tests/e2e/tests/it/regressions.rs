//! Regression tests for the pipeline defects found by the attacker-and-race review (issue 6),
//! each named after the scenario it pins and each failing on the code before its fix.

use std::time::Duration;

use attrsync_e2e::{TestStack, eventually};
use attrsync_kafka::topics;
use attrsync_proto::v1::{
    ExpenseAttribute, FyleAttributeWebhook, GetFyleSyncStatusRequest, ListExpenseAttributesRequest,
};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

fn body(action: &str, resource: &str, data: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"action": action, "resource": resource, "data": data})).unwrap()
}

fn category(
    action: &str,
    org: &str,
    id: i64,
    sub: &str,
    updated_at: &str,
    enabled: bool,
) -> Vec<u8> {
    body(
        action,
        "CATEGORY",
        json!({"id": id, "org_id": org, "name": "Travel", "sub_category": sub,
               "is_enabled": enabled, "updated_at": updated_at}),
    )
}

fn deleted(org: &str, id: i64, updated_at: Option<&str>) -> Vec<u8> {
    let mut data = json!({"id": id, "org_id": org, "name": "Travel"});
    if let Some(at) = updated_at {
        data["updated_at"] = json!(at);
    }
    body("DELETED", "CATEGORY", data)
}

async fn post_all(stack: &TestStack, workspace_id: i64, bodies: &[Vec<u8>]) {
    for body in bodies {
        let response = stack.post_fyle_webhook(workspace_id, body).await.unwrap();
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }
}

/// Waits until fyle-sync has processed `n` webhooks of the workspace (applied or ignored):
/// they travel one partition in order, so everything posted before is then applied.
async fn processed(stack: &TestStack, workspace_id: i64, n: u64) {
    eventually(WAIT, "fyle-sync to process the webhooks", || async {
        let status = stack
            .fyle_sync
            .clone()
            .get_sync_status(GetFyleSyncStatusRequest { workspace_id })
            .await?
            .into_inner();
        Ok((status.webhook_events_applied + status.webhook_events_ignored >= n).then_some(()))
    })
    .await
    .unwrap();
}

async fn attributes(stack: &TestStack, workspace_id: i64, kind: &str) -> Vec<ExpenseAttribute> {
    stack
        .fyle_sync
        .clone()
        .list_expense_attributes(ListExpenseAttributesRequest {
            workspace_id,
            attribute_type: Some(kind.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .attributes
}

async fn category_with_id(
    stack: &TestStack,
    workspace_id: i64,
    id: &str,
) -> Option<ExpenseAttribute> {
    attributes(stack, workspace_id, "CATEGORY")
        .await
        .into_iter()
        .find(|a| a.source_id == id)
}

fn at(offset_secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(offset_secs)).to_rfc3339()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_far_future_updated_at_does_not_freeze_the_category() {
    let stack = TestStack::start_with_env(
        vec![],
        vec![("FYLE_SYNC__VERSIONS__MAX_CLOCK_SKEW".into(), "1s".into())],
    )
    .await
    .unwrap();
    let (workspace_id, org) = stack.create_workspace().await.unwrap();
    post_all(
        &stack,
        workspace_id,
        &[
            category("CREATED", &org, 1, "Flight", &at(-60), true),
            category(
                "UPDATED",
                &org,
                1,
                "Forged",
                "9999-01-01T00:00:00+00:00",
                true,
            ),
        ],
    )
    .await;
    processed(&stack, workspace_id, 2).await;
    // Past the allowed skew, a real update stamped now must win over the forged stamp.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    post_all(
        &stack,
        workspace_id,
        &[category("UPDATED", &org, 1, "Train", &at(0), true)],
    )
    .await;
    processed(&stack, workspace_id, 3).await;
    let row = category_with_id(&stack, workspace_id, "1").await.unwrap();
    assert_eq!(row.value, "Travel / Train");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_and_an_update_with_the_same_updated_at_end_deleted_in_either_order() {
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, org) = stack.create_workspace().await.unwrap();
    let (t0, t1) = (at(-120), at(-60));
    post_all(
        &stack,
        workspace_id,
        &[
            category("CREATED", &org, 1, "Flight", &t0, true),
            deleted(&org, 1, Some(&t1)),
            category("UPDATED", &org, 1, "Flight", &t1, true),
            category("CREATED", &org, 2, "Train", &t0, true),
            category("UPDATED", &org, 2, "Train", &t1, true),
            deleted(&org, 2, Some(&t1)),
        ],
    )
    .await;
    processed(&stack, workspace_id, 6).await;
    for id in ["1", "2"] {
        let row = category_with_id(&stack, workspace_id, id).await.unwrap();
        assert!(!row.active, "category {id} must stay deleted");
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_before_its_create_leaves_a_tombstone_the_late_create_cannot_pass() {
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, org) = stack.create_workspace().await.unwrap();
    // The relay can reorder them: the DELETED (no version: it counts as received) first.
    post_all(
        &stack,
        workspace_id,
        &[
            deleted(&org, 5, None),
            category("CREATED", &org, 5, "Flight", &at(-60), true),
        ],
    )
    .await;
    processed(&stack, workspace_id, 2).await;
    let row = category_with_id(&stack, workspace_id, "5").await;
    assert!(row.as_ref().is_none_or(|r| !r.active), "{row:?}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_update_after_a_delete_of_an_inactive_row_changes_nothing() {
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, org) = stack.create_workspace().await.unwrap();
    post_all(
        &stack,
        workspace_id,
        &[
            category("CREATED", &org, 6, "Flight", &at(-300), false),
            deleted(&org, 6, Some(&at(-60))),
            category("UPDATED", &org, 6, "Flight", &at(-120), true),
        ],
    )
    .await;
    processed(&stack, workspace_id, 3).await;
    let row = category_with_id(&stack, workspace_id, "6").await.unwrap();
    assert!(
        !row.active,
        "the delayed update must not revive a deleted category"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_field_named_cost_center_never_deactivates_the_system_cost_centers() {
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, org) = stack.create_workspace().await.unwrap();
    post_all(
        &stack,
        workspace_id,
        &[
            body(
                "CREATED",
                "COST_CENTER",
                json!({"id": 10, "org_id": org, "name": "Sales", "is_enabled": true,
                       "updated_at": at(-60)}),
            ),
            body(
                "UPDATED",
                "EXPENSE_FIELD",
                json!({"id": 555, "org_id": org, "field_name": "Cost Center", "type": "SELECT",
                       "is_custom": true, "is_enabled": true, "options": ["Ops"],
                       "updated_at": at(-30)}),
            ),
        ],
    )
    .await;
    processed(&stack, workspace_id, 2).await;
    let system = attributes(&stack, workspace_id, "COST_CENTER").await;
    assert_eq!(system.len(), 1);
    assert!(system[0].active, "the system cost center stays active");
    let custom = attributes(&stack, workspace_id, "CUSTOM:COST_CENTER").await;
    assert_eq!(
        custom.iter().map(|a| a.value.as_str()).collect::<Vec<_>>(),
        vec!["Ops"]
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_across_the_hour_boundary_is_acknowledged_as_a_duplicate() {
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, org) = stack.create_workspace().await.unwrap();
    // An unversioned body (no data.updated_at), first delivered ten seconds ago — in the
    // previous hour bucket, as a retry that straddles the boundary sees it.
    let report = body(
        "ACCOUNTING_EXPORT_INITIATED",
        "REPORT",
        json!({"id": "rp1", "org_id": org}),
    );
    let key = ingest::fyle::dedupe_key(
        workspace_id,
        &report,
        false,
        chrono::Utc::now() - chrono::Duration::hours(1),
    );
    let mut conn = AsyncPgConnection::establish(&stack.database.url)
        .await
        .unwrap();
    diesel::sql_query(format!(
        "INSERT INTO ingest.inbox (delivery_id, dedupe_key, source, workspace_id, action, \
         resource, disposition, body, received_at) VALUES ('first', '{}', 'fyle', {workspace_id}, \
         'ACCOUNTING_EXPORT_INITIATED', 'REPORT', 'PUBLISHED', '{{}}', now() - interval '10 seconds')",
        key.stored()
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let response = stack
        .post_fyle_webhook(workspace_id, &report)
        .await
        .unwrap();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["status"], "duplicate", "{answer}");
    assert_eq!(answer["delivery_id"], "first");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_for_a_workspace_mapping_does_not_know_is_skipped_and_the_next_one_applied() {
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, org) = stack.create_workspace().await.unwrap();
    // Written straight to the topic (ingest would refuse it): a workspace nobody knows.
    stack
        .publish_directly(
            topics::FYLE_ATTRIBUTE_WEBHOOKS,
            987_654_321,
            FyleAttributeWebhook {
                action: "CREATED".into(),
                resource: "CATEGORY".into(),
                data_json: json!({"id": 1, "org_id": "orX", "name": "Ghost"}).to_string(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    post_all(
        &stack,
        workspace_id,
        &[category("CREATED", &org, 8, "Flight", &at(-60), true)],
    )
    .await;
    processed(&stack, workspace_id, 1).await;
    assert!(category_with_id(&stack, workspace_id, "8").await.is_some());
    let progress = stack
        .fyle_sync_running()
        .consumer(topics::FYLE_ATTRIBUTE_WEBHOOKS)
        .unwrap();
    assert_eq!(progress.dead_lettered(), 0, "skipped, not dead-lettered");
    stack.stop().await;
}
