//! Full pulls (SyncDimensions) against the Fyle sandbox in process: the pull path and the
//! webhook path store identical rows, a full pass deactivates what Fyle deleted, the 24-hour
//! rule, a webhook applied while a pull runs is not overwritten by the pull's older copy, and
//! an incremental pull reads only what changed since the watermark.

use std::time::Duration;

use attrsync_e2e::{TestStack, eventually};
use attrsync_proto::v1::{
    ExpenseAttribute, ListExpenseAttributesRequest, SyncFyleDimensionsRequest,
    SyncFyleDimensionsResponse,
};
use attrsync_sandbox::{DEMO_ORG_ID, FaultAction, FaultRule, SandboxHandle, Side};
use serde_json::{Value, json};

use crate::fyle_connection::{connected_workspace, demo_sandbox, stack_for};

const WAIT: Duration = Duration::from_secs(60);
const CATEGORIES: &str = "GET /platform/v1/admin/categories";

async fn sync(
    stack: &TestStack,
    workspace_id: i64,
    force: bool,
    types: &[&str],
) -> SyncFyleDimensionsResponse {
    stack
        .fyle_sync
        .clone()
        .sync_dimensions(SyncFyleDimensionsRequest {
            workspace_id,
            force,
            attribute_types: types.iter().map(|t| (*t).to_owned()).collect(),
            incremental: false,
        })
        .await
        .unwrap()
        .into_inner()
}

async fn categories(stack: &TestStack, workspace_id: i64) -> Vec<ExpenseAttribute> {
    stack
        .fyle_sync
        .clone()
        .list_expense_attributes(ListExpenseAttributesRequest {
            workspace_id,
            attribute_type: Some("CATEGORY".into()),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .attributes
}

/// The sandbox's categories of the demo org, as its list endpoint serves them.
fn sandbox_categories(sb: &SandboxHandle, ids: &[String]) -> Vec<Value> {
    ids.iter()
        .map(|id| sb.fyle().get(DEMO_ORG_ID, "categories", id).unwrap())
        .collect()
}

fn webhook(action: &str, data: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"action": action, "resource": "CATEGORY", "data": data})).unwrap()
}

/// What a user sees of a row (ids and write times differ between databases).
fn visible(a: &ExpenseAttribute) -> (String, String, String, bool, String, String) {
    (
        a.source_id.clone(),
        a.attribute_type.clone(),
        a.value.clone(),
        a.active,
        a.display_name.clone(),
        format!("{:?}{}", a.source_updated_at, a.detail_json),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pull_path_and_the_webhook_path_store_identical_category_rows() {
    let sb = demo_sandbox().await;
    // Two stacks: a Fyle org belongs to one workspace per mapping.
    let pulled = stack_for(&sb).await;
    let by_pull = connected_workspace(&pulled, &sb).await;
    let report = sync(&pulled, by_pull, true, &["CATEGORY"]).await;
    assert!(report.pulled);
    assert_eq!(report.resources[0].outcome, "PULLED");
    let mut from_pull: Vec<_> = categories(&pulled, by_pull)
        .await
        .iter()
        .map(visible)
        .collect();
    from_pull.sort();
    assert!(!from_pull.is_empty());
    assert_eq!(report.resources[0].changed as usize, from_pull.len());

    let hooked = stack_for(&sb).await;
    let by_webhook = hooked.create_workspace_for_org(DEMO_ORG_ID).await.unwrap();
    let ids: Vec<String> = from_pull.iter().map(|r| r.0.clone()).collect();
    for data in sandbox_categories(&sb, &ids) {
        let posted = hooked
            .post_fyle_webhook(by_webhook, &webhook("UPDATED", &data))
            .await
            .unwrap();
        assert_eq!(posted.status(), 200);
    }
    let from_webhooks = eventually(WAIT, "every category by webhook", || async {
        let mut rows: Vec<_> = categories(&hooked, by_webhook)
            .await
            .iter()
            .map(visible)
            .collect();
        rows.sort();
        Ok((rows.len() == ids.len()).then_some(rows))
    })
    .await
    .unwrap();
    assert_eq!(from_webhooks, from_pull);
    pulled.stop().await;
    hooked.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_category_deleted_in_fyle_is_deactivated_by_the_next_full_pass() {
    let sb = demo_sandbox().await;
    let stack = stack_for(&sb).await;
    let workspace_id = connected_workspace(&stack, &sb).await;
    sync(&stack, workspace_id, true, &["CATEGORY"]).await;
    let before = categories(&stack, workspace_id).await;
    assert!(before.len() >= 2 && before.iter().all(|a| a.active));
    let gone = before[0].source_id.clone();
    sb.fyle().delete(DEMO_ORG_ID, "categories", &gone).unwrap();

    let report = sync(&stack, workspace_id, true, &["CATEGORY"]).await;
    assert_eq!(report.resources[0].deleted, 1);
    let after = categories(&stack, workspace_id).await;
    assert_eq!(after.len(), before.len(), "deactivated, not removed");
    for a in &after {
        assert_eq!(a.active, a.source_id != gone, "{}", a.source_id);
    }
    // Nothing else changes on the pass after.
    let again = sync(&stack, workspace_id, true, &["CATEGORY"]).await;
    assert_eq!(
        (again.resources[0].deleted, again.attributes_changed),
        (0, 0)
    );
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_pulled_within_24_hours_is_pulled_again_only_when_forced() {
    let sb = demo_sandbox().await;
    let stack = stack_for(&sb).await;
    let workspace_id = connected_workspace(&stack, &sb).await;
    let first = sync(&stack, workspace_id, false, &["CATEGORY", "PROJECT"]).await;
    assert!(first.pulled);
    assert!(first.resources.iter().all(|r| r.outcome == "PULLED"));
    let listed = sb.stats().count(Side::Fyle, CATEGORIES);

    let second = sync(&stack, workspace_id, false, &["CATEGORY", "PROJECT"]).await;
    assert!(!second.pulled);
    assert!(
        second
            .resources
            .iter()
            .all(|r| r.outcome == "SKIPPED_RECENT")
    );
    assert_eq!(
        sb.stats().count(Side::Fyle, CATEGORIES),
        listed,
        "Fyle was not called"
    );
    // A resource never pulled is pulled; a forced one is pulled again.
    let other = sync(&stack, workspace_id, false, &["COST_CENTER", "CATEGORY"]).await;
    assert_eq!(
        other
            .resources
            .iter()
            .map(|r| r.outcome.as_str())
            .collect::<Vec<_>>(),
        vec!["PULLED", "SKIPPED_RECENT"]
    );
    let forced = sync(&stack, workspace_id, true, &["CATEGORY"]).await;
    assert!(forced.pulled);
    assert!(sb.stats().count(Side::Fyle, CATEGORIES) > listed);
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_applied_while_a_pull_runs_is_not_overwritten_by_the_pull() {
    let sb = demo_sandbox().await;
    let stack = stack_for(&sb).await;
    let workspace_id = connected_workspace(&stack, &sb).await;
    let listed: Vec<Value> = sb
        .fyle()
        .get(DEMO_ORG_ID, "categories", "22330021")
        .into_iter()
        .collect();
    let mut renamed = listed[0].clone();
    renamed["name"] = json!("Renamed by webhook");
    renamed["sub_category"] = Value::Null;
    renamed["updated_at"] = json!((chrono::Utc::now() + chrono::Duration::seconds(1)).to_rfc3339());

    // The pull's list call is held for 3 s: it reads Fyle's older copy, and writes it after
    // the webhook below has been applied.
    sb.faults().add(FaultRule {
        side: Some(Side::Fyle),
        endpoint: CATEGORIES.into(),
        action: FaultAction::Latency { ms: 3000 },
        skip: 0,
        times: Some(1),
    });
    let pull = {
        let mut client = stack.fyle_sync.clone();
        tokio::spawn(async move {
            client
                .sync_dimensions(SyncFyleDimensionsRequest {
                    workspace_id,
                    force: true,
                    attribute_types: vec!["CATEGORY".into()],
                    incremental: false,
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let posted = stack
        .post_fyle_webhook(workspace_id, &webhook("UPDATED", &renamed))
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    eventually(WAIT, "the webhook applied", || async {
        Ok(categories(&stack, workspace_id)
            .await
            .iter()
            .any(|a| a.value == "Renamed by webhook")
            .then_some(()))
    })
    .await
    .unwrap();
    assert!(!pull.is_finished(), "the webhook landed during the pull");
    let report = pull.await.unwrap().unwrap().into_inner();
    assert!(report.pulled);
    let rows = categories(&stack, workspace_id).await;
    let row = rows.iter().find(|a| a.source_id == "22330021").unwrap();
    assert_eq!(
        row.value, "Renamed by webhook",
        "the pull's older copy did not overwrite the webhook"
    );
    assert!(rows.len() > 1, "the pull applied the other categories");
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_pull_reads_only_rows_changed_since_the_watermark() {
    let sb = demo_sandbox().await;
    let stack = stack_for(&sb).await;
    let workspace_id = connected_workspace(&stack, &sb).await;
    let incremental = |stack: &TestStack| {
        let mut client = stack.fyle_sync.clone();
        async move {
            client
                .sync_dimensions(SyncFyleDimensionsRequest {
                    workspace_id,
                    force: false,
                    attribute_types: vec!["CATEGORY".into()],
                    incremental: true,
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    // Never pulled: the incremental request gets a full pass.
    let first = incremental(&stack).await;
    assert_eq!(first.resources[0].outcome, "PULLED");
    let all = first.resources[0].rows;
    assert!(all >= 2);

    sb.fyle()
        .rename(DEMO_ORG_ID, "categories", "22330021", "Airfare")
        .unwrap();
    // Within 24 hours of the full pull, and still pulled: only the renamed row is read.
    let second = incremental(&stack).await;
    assert_eq!(second.resources[0].outcome, "PULLED_INCREMENTAL");
    assert_eq!(second.resources[0].rows, 1, "only the changed row");
    assert_eq!(second.attributes_changed, 1);
    let rows = categories(&stack, workspace_id).await;
    let renamed = rows.iter().find(|a| a.source_id == "22330021").unwrap();
    assert!(renamed.value.starts_with("Airfare"), "{}", renamed.value);
    assert!(
        rows.iter().all(|a| a.active),
        "no deletions from a partial listing"
    );

    let status = stack
        .fyle_sync
        .clone()
        .get_sync_status(attrsync_proto::v1::GetFyleSyncStatusRequest { workspace_id })
        .await
        .unwrap()
        .into_inner();
    let category = status
        .resources
        .iter()
        .find(|r| r.attribute_type == "CATEGORY")
        .unwrap();
    assert!(category.last_full_sync_at.is_some() && category.last_incremental_sync_at.is_some());
    assert!(category.watermark.is_some());
    stack.stop().await;
    sb.stop().await;
}
