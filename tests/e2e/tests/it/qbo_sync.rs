//! qbo-sync against the QBO sandbox over real HTTP, with the real PostgreSQL and Kafka: full
//! pulls by the account-type rules, a QBO webhook through ingest ending as an updated row (with
//! the rename's old value on the change topic), coalesced bursts, a realm shared by two
//! workspaces, merges, hard deletes found by a full pass, incremental CDC pulls, the size limit,
//! rotating refresh tokens under two replicas, an expired grant (and its announcements), and
//! every Item type, hierarchy and multi-rate tax code through the real pull.

use std::{collections::BTreeSet, time::Duration};

use attrsync_e2e::{TestStack, eventually, qbo::QboSyncHandle};
use attrsync_kafka::{envelope, topics};
use attrsync_proto::{
    Payload,
    v1::{
        ChangeKind, ConnectQboRequest, DestinationAttribute, GetAttributeCountsRequest,
        GetQboSyncStatusRequest, ImportSettings, ListDestinationAttributesRequest,
        SyncQboDimensionsRequest, SyncQboDimensionsResponse, UpdateImportSettingsRequest,
    },
};
use attrsync_sandbox::{
    FaultAction, FaultRule, QboWebhookConfig, Sandbox, SandboxConfig, SandboxHandle, Seed, Side,
};

use crate::kafka_reader::{
    assert_broken_then_reconnected, connection_events_until_reconnected, connection_transitions,
    read_until,
};

const WAIT: Duration = Duration::from_secs(60);
const REALM: &str = "9130357766900456";

async fn variety_sandbox() -> SandboxHandle {
    Sandbox::start(SandboxConfig {
        seed: Seed::Variety,
        workers: 1,
        ..SandboxConfig::default()
    })
    .await
    .unwrap()
}

/// A stack, a qbo-sync on `sb`, and a workspace of `REALM` connected with the realm's token.
async fn connected(sb: &SandboxHandle) -> (TestStack, QboSyncHandle, i64) {
    let stack = TestStack::start().await.unwrap();
    let qbo = stack
        .start_qbo_sync(sb.qbo_url(), Vec::new())
        .await
        .unwrap();
    let (workspace_id, _) = stack
        .create_workspace_with_realm(Some(REALM))
        .await
        .unwrap();
    connect(sb, &qbo, workspace_id).await;
    (stack, qbo, workspace_id)
}

async fn connect(sb: &SandboxHandle, qbo: &QboSyncHandle, workspace_id: i64) {
    let response = qbo
        .client
        .clone()
        .connect_qbo(ConnectQboRequest {
            workspace_id,
            realm_id: REALM.into(),
            authorization_code: None,
            refresh_token: sb.qbo().refresh_token(REALM),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!response.company_name.is_empty(), "CompanyInfo was read");
}

/// Delivers the sandbox's QBO webhooks to this stack's ingest.
fn deliver_webhooks_to(sb: &SandboxHandle, stack: &TestStack) {
    sb.set_qbo_webhook(QboWebhookConfig {
        url: Some(format!("{}/webhooks/qbo", stack.ingest_url)),
        batch_window_ms: 50,
        ..QboWebhookConfig::default()
    });
}

async fn sync(
    qbo: &QboSyncHandle,
    workspace_id: i64,
    entities: &[&str],
    incremental: bool,
) -> SyncQboDimensionsResponse {
    qbo.client
        .clone()
        .sync_dimensions(SyncQboDimensionsRequest {
            workspace_id,
            force: true,
            attribute_types: entities.iter().map(|e| (*e).to_owned()).collect(),
            incremental,
        })
        .await
        .unwrap()
        .into_inner()
}

async fn attributes(qbo: &QboSyncHandle, workspace_id: i64) -> Vec<DestinationAttribute> {
    let mut out = Vec::new();
    let mut after_id = 0;
    loop {
        let page = qbo
            .client
            .clone()
            .list_destination_attributes(ListDestinationAttributesRequest {
                workspace_id,
                after_id,
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        out.extend(page.attributes);
        if page.next_after_id == 0 {
            return out;
        }
        after_id = page.next_after_id;
    }
}

fn row<'a>(
    rows: &'a [DestinationAttribute],
    attribute_type: &str,
    id: &str,
) -> Option<&'a DestinationAttribute> {
    rows.iter()
        .find(|a| a.attribute_type == attribute_type && a.destination_id == id)
}

/// QBO data-API requests the sandbox served for `REALM` (queries, reads, CDC, writes).
fn qbo_requests(sb: &SandboxHandle) -> u64 {
    sb.stats()
        .count_where(Side::Qbo, |endpoint| endpoint.contains("/v3/company/"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sync_splits_accounts_by_type_and_a_second_one_changes_nothing() {
    let sb = variety_sandbox().await;
    let (stack, qbo, workspace_id) = connected(&sb).await;
    let first = sync(&qbo, workspace_id, &[], false).await;
    assert!(first.pulled);
    assert!(first.attributes_changed > 0);
    let rows = attributes(&qbo, workspace_id).await;
    // The workspace has the incumbent's default charts of accounts: Expense only.
    for id in 200..=214 {
        let id = id.to_string();
        let account = sb.qbo().get(REALM, "Account", &id).unwrap();
        let account_type = account["AccountType"].as_str().unwrap();
        let expected: BTreeSet<&str> = match account_type {
            "Expense" => ["ACCOUNT"].into(),
            "Credit Card" => ["CREDIT_CARD_ACCOUNT"].into(),
            "Bank" | "Other Current Liability" => ["BANK_ACCOUNT"].into(),
            "Accounts Payable" => ["ACCOUNTS_PAYABLE"].into(),
            _ => BTreeSet::new(),
        };
        let stored: BTreeSet<&str> = rows
            .iter()
            .filter(|a| a.destination_id == id && a.display_name != "Item")
            .filter(|a| a.attribute_type.contains("ACCOUNT"))
            .map(|a| a.attribute_type.as_str())
            .collect();
        assert_eq!(stored, expected, "account {id} of type {account_type}");
        for a in rows
            .iter()
            .filter(|a| a.destination_id == id && a.display_name != "Item")
        {
            if !a.attribute_type.contains("ACCOUNT") {
                continue;
            }
            assert_eq!(a.value, account["FullyQualifiedName"].as_str().unwrap());
            let code = account["AcctNum"]
                .as_str()
                .map(|c| c.split_whitespace().collect::<Vec<_>>().join(" "));
            assert_eq!(a.code, code.filter(|c| !c.is_empty()), "account {id}");
        }
    }
    // An inactive QBO record is stored inactive, without the " (deleted)" suffix (#32).
    let old_travel = row(&rows, "ACCOUNT", "88");
    if let Some(old_travel) = old_travel {
        assert!(!old_travel.active);
        assert!(
            !old_travel.value.contains("(deleted)"),
            "{}",
            old_travel.value
        );
    }
    let vendor = row(&rows, "VENDOR", "30").unwrap();
    assert_eq!(vendor.value, "Books by Bessie");
    assert!(row(&rows, "EMPLOYEE", "63").is_some());
    assert!(row(&rows, "CUSTOMER", "7").is_some());
    let tax = rows
        .iter()
        .find(|a| a.attribute_type == "TAX_CODE")
        .expect("a tax code with purchase rates is stored");
    assert!(tax.value.contains(" @"), "{}", tax.value);
    assert!(tax.detail_json.contains("tax_rate"), "{}", tax.detail_json);

    let second = sync(&qbo, workspace_id, &[], false).await;
    assert_eq!(second.attributes_changed, 0, "{second:?}");
    assert_eq!(attributes(&qbo, workspace_id).await.len(), rows.len());
    let status = qbo
        .client
        .clone()
        .get_sync_status(GetQboSyncStatusRequest { workspace_id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.qbo_connection, "CONNECTED");
    assert!(status.destination_synced_at.is_some());
    assert!(
        status
            .entities
            .iter()
            .all(|e| e.last_outcome == "PULLED_FULL" && e.watermark.is_some()),
        "{status:?}"
    );
    let counts = qbo
        .client
        .clone()
        .get_attribute_counts(GetAttributeCountsRequest { workspace_id })
        .await
        .unwrap()
        .into_inner();
    assert!(
        counts.counts.get("Vendor").is_some_and(|n| *n >= 1),
        "{counts:?}"
    );
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qbo_webhook_through_ingest_renames_the_row_and_publishes_the_old_value() {
    let sb = variety_sandbox().await;
    let (stack, qbo, workspace_id) = connected(&sb).await;
    sync(&qbo, workspace_id, &["Vendor"], false).await;
    deliver_webhooks_to(&sb, &stack);
    sb.qbo()
        .rename(REALM, "Vendor", "30", "Books by Bessie's Sister")
        .unwrap();
    eventually(WAIT, "the webhook's rename stored", || async {
        let rows = attributes(&qbo, workspace_id).await;
        Ok(row(&rows, "VENDOR", "30")
            .filter(|v| v.value == "Books by Bessie's Sister")
            .cloned())
    })
    .await
    .unwrap();
    let topic = stack.topic(topics::DESTINATION_ATTRIBUTES_CHANGED);
    let messages = read_until(&topic, WAIT, |messages| {
        messages
            .iter()
            .any(|m| renamed_vendor(&m.payload).is_some())
    })
    .await
    .unwrap();
    let change = messages
        .iter()
        .find_map(|m| renamed_vendor(&m.payload))
        .expect("a RENAMED change");
    assert_eq!(change.old_value.as_deref(), Some("Books by Bessie"));
    assert_eq!(change.value, "Books by Bessie's Sister");
    stack.stop().await;
    sb.stop().await;
}

fn renamed_vendor(payload: &[u8]) -> Option<attrsync_proto::v1::DestinationAttributeChange> {
    let envelope = envelope::decode(payload).ok()?;
    let Some(Payload::DestinationAttributesChanged(event)) = envelope.payload else {
        return None;
    };
    if event.origin != "webhook" {
        return None;
    }
    event
        .changes
        .into_iter()
        .find(|c| c.destination_id == "30" && c.kind == ChangeKind::Renamed as i32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_webhooks_for_a_realm_shared_by_two_workspaces_costs_a_few_fetches() {
    let sb = variety_sandbox().await;
    let stack = TestStack::start().await.unwrap();
    // A coalescing window closer to production's (the tests' default is 100 ms): a round waits
    // for a second's worth of changes, so the count below does not depend on this machine's
    // load spreading the burst's arrival.
    let qbo = stack
        .start_qbo_sync(
            sb.qbo_url(),
            vec![("QBO_SYNC__WEBHOOKS__COALESCE_WINDOW".into(), "1s".into())],
        )
        .await
        .unwrap();
    let (first, _) = stack
        .create_workspace_with_realm(Some(REALM))
        .await
        .unwrap();
    connect(&sb, &qbo, first).await;
    let (second, _) = stack
        .create_workspace_with_realm(Some(REALM))
        .await
        .unwrap();
    sb.qbo().generate(REALM, "Customer", 200).unwrap();
    sync(&qbo, first, &["Customer"], false).await;
    sync(&qbo, second, &["Customer"], false).await;
    let ids: Vec<String> = attributes(&qbo, first)
        .await
        .into_iter()
        .filter(|a| a.attribute_type == "CUSTOMER" && a.active)
        .map(|a| a.destination_id)
        .take(150)
        .collect();
    assert_eq!(ids.len(), 150);
    // Intuit batches a realm's events (1–5 minutes in production); here the sandbox batches a
    // second's worth, so what is measured is qbo-sync's coalescing, not this test's pace.
    sb.set_qbo_webhook(QboWebhookConfig {
        url: Some(format!("{}/webhooks/qbo", stack.ingest_url)),
        batch_window_ms: 1_000,
        ..QboWebhookConfig::default()
    });
    let before = qbo_requests(&sb);
    for id in &ids {
        sb.qbo()
            .update(
                REALM,
                "Customer",
                id,
                serde_json::json!({"CompanyName": "Renamed Co"}),
            )
            .unwrap();
        sb.qbo()
            .rename(REALM, "Customer", id, &format!("Burst customer {id}"))
            .unwrap();
    }
    for workspace_id in [first, second] {
        eventually(
            WAIT,
            "every burst rename stored in both workspaces",
            || async {
                let rows = attributes(&qbo, workspace_id).await;
                Ok(ids
                    .iter()
                    .all(|id| {
                        row(&rows, "CUSTOMER", id)
                            .is_some_and(|c| c.value.ends_with(&format!("Burst customer {id}")))
                    })
                    .then_some(()))
            },
        )
        .await
        .unwrap();
    }
    let spent = qbo_requests(&sb) - before;
    // 300 changes (two per customer), fanned out to two workspaces: fetched once per realm and
    // entity type per round, so a handful of queries — not 600 reads.
    assert!(spent <= 12, "{spent} QBO requests for 300 changes");
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merges_and_hard_deletes_deactivate_and_cdc_pulls_only_what_changed() {
    let sb = variety_sandbox().await;
    let (stack, qbo, workspace_id) = connected(&sb).await;
    sb.qbo().generate(REALM, "Vendor", 20).unwrap();
    sync(&qbo, workspace_id, &["Vendor", "Customer"], false).await;
    let vendors: Vec<String> = attributes(&qbo, workspace_id)
        .await
        .into_iter()
        .filter(|a| a.attribute_type == "VENDOR" && a.active && a.destination_id != "30")
        .map(|a| a.destination_id)
        .collect();
    let (merged, deleted) = (vendors[0].clone(), vendors[1].clone());

    // A merge through the webhook path deactivates the merged-away vendor.
    deliver_webhooks_to(&sb, &stack);
    sb.qbo().merge(REALM, "Vendor", &merged, "30").unwrap();
    eventually(WAIT, "the merged-away vendor deactivated", || async {
        let rows = attributes(&qbo, workspace_id).await;
        Ok(row(&rows, "VENDOR", &merged).filter(|v| !v.active).cloned())
    })
    .await
    .unwrap();

    // Without webhooks: a hard delete is found by the next full pass only.
    sb.set_qbo_webhook(QboWebhookConfig::default());
    sb.qbo().delete(REALM, "Vendor", &deleted).unwrap();
    sb.qbo()
        .rename(REALM, "Customer", "7", "Freeman Sporting Goods Ltd")
        .unwrap();
    let incremental = sync(&qbo, workspace_id, &["Customer"], true).await;
    assert_eq!(
        incremental.entities[0].outcome, "PULLED_CDC",
        "{incremental:?}"
    );
    assert!(
        incremental.entities[0].fetched < 5,
        "CDC reads what changed, not every customer: {incremental:?}"
    );
    let rows = attributes(&qbo, workspace_id).await;
    assert!(row(&rows, "CUSTOMER", "7").unwrap().value.contains("Ltd"));
    assert!(
        row(&rows, "VENDOR", &deleted).unwrap().active,
        "not yet seen"
    );
    let full = sync(&qbo, workspace_id, &["Vendor"], false).await;
    assert_eq!(full.entities[0].deactivated, 1, "{full:?}");
    let rows = attributes(&qbo, workspace_id).await;
    assert!(!row(&rows, "VENDOR", &deleted).unwrap().active);
    assert!(row(&rows, "VENDOR", &vendors[2]).unwrap().active);
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_size_limit_skips_an_entity_but_stores_its_count_and_exempts_employees() {
    let sb = variety_sandbox().await;
    let stack = TestStack::start().await.unwrap();
    let qbo = stack
        .start_qbo_sync(
            sb.qbo_url(),
            vec![
                ("QBO_SYNC__SIZE_LIMIT__MAX_ACTIVE".into(), "2".into()),
                (
                    "QBO_SYNC__SIZE_LIMIT__APPLIES_AFTER".into(),
                    "2000-01-01T00:00:00Z".into(),
                ),
            ],
        )
        .await
        .unwrap();
    let (workspace_id, _) = stack
        .create_workspace_with_realm(Some(REALM))
        .await
        .unwrap();
    connect(&sb, &qbo, workspace_id).await;
    sb.qbo().generate(REALM, "Vendor", 5).unwrap();
    sb.qbo().generate(REALM, "Employee", 5).unwrap();
    let report = sync(&qbo, workspace_id, &["Vendor", "Employee"], false).await;
    let outcome = |e: &str| {
        report
            .entities
            .iter()
            .find(|p| p.entity == e)
            .map(|p| p.outcome.clone())
    };
    assert_eq!(outcome("Vendor").as_deref(), Some("SKIPPED_SIZE_LIMIT"));
    assert_eq!(outcome("Employee").as_deref(), Some("PULLED_FULL"));
    let rows = attributes(&qbo, workspace_id).await;
    assert!(rows.iter().all(|a| a.attribute_type != "VENDOR"));
    assert!(
        rows.iter()
            .filter(|a| a.attribute_type == "EMPLOYEE")
            .count()
            >= 5
    );
    let counts = qbo
        .client
        .clone()
        .get_attribute_counts(GetAttributeCountsRequest { workspace_id })
        .await
        .unwrap()
        .into_inner();
    assert!(
        counts.counts.get("Vendor").is_some_and(|n| *n > 2),
        "{counts:?}"
    );
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_refreshing_at_once_never_lose_the_rotating_refresh_token() {
    let sb = variety_sandbox().await;
    let (stack, first, workspace_id) = connected(&sb).await;
    let second = stack
        .start_qbo_sync(sb.qbo_url(), Vec::new())
        .await
        .unwrap();
    for round in 0..3 {
        // Every access token dies: both replicas must refresh, racing on the rotation.
        sb.qbo().expire_tokens();
        let (a, b) = tokio::join!(
            sync(&first, workspace_id, &["Vendor"], false),
            sync(&second, workspace_id, &["Customer"], false),
        );
        assert!(a.pulled && b.pulled, "round {round}: {a:?} {b:?}");
    }
    let status = second
        .client
        .clone()
        .get_sync_status(GetQboSyncStatusRequest { workspace_id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.qbo_connection, "CONNECTED");
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_grant_marks_the_realm_expired_and_stops_calling_qbo() {
    let sb = variety_sandbox().await;
    let (stack, qbo, workspace_id) = connected(&sb).await;
    // A second workspace of the same company shares its grant, so it hears of its changes.
    let (sharing, _) = stack
        .create_workspace_with_realm(Some(REALM))
        .await
        .unwrap();
    stack
        .wait_for_realm_in_projection("qbo_sync", REALM, 2, WAIT)
        .await
        .unwrap();
    // Someone else refreshes the realm's grant: the stored refresh token is rotated away
    // (the sandbox keeps no grace for the previous token).
    let app = sb.credentials().qbo_app;
    let rotated = reqwest::Client::new()
        .post(format!(
            "{}/oauth2/v1/tokens/bearer",
            sb.qbo_url().trim_end_matches('/')
        ))
        .basic_auth(&app.client_id, Some(&app.client_secret))
        .header("accept", "application/json")
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &sb.qbo().refresh_token(REALM).unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert!(rotated.status().is_success());
    sb.qbo().expire_tokens();
    let refused = qbo
        .client
        .clone()
        .sync_dimensions(SyncQboDimensionsRequest {
            workspace_id,
            force: true,
            attribute_types: vec!["Vendor".into()],
            incremental: false,
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    eventually(WAIT, "the realm marked EXPIRED", || async {
        let status = qbo
            .client
            .clone()
            .get_sync_status(GetQboSyncStatusRequest { workspace_id })
            .await?
            .into_inner();
        Ok((status.qbo_connection == "EXPIRED").then_some(()))
    })
    .await
    .unwrap();
    let before = sb.stats().total;
    let again = qbo
        .client
        .clone()
        .sync_dimensions(SyncQboDimensionsRequest {
            workspace_id,
            force: true,
            attribute_types: vec!["Vendor".into()],
            incremental: false,
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
    assert_eq!(sb.stats().total, before, "an expired realm is not called");
    // Reconnecting with the new grant brings it back.
    connect(&sb, &qbo, workspace_id).await;
    assert!(sync(&qbo, workspace_id, &["Vendor"], false).await.pulled);

    // Each change was announced once, in order: to the connecting workspace from its first
    // connection; the sharing one, which joined the connected company without a ConnectQbo of
    // its own, first hears of it at the expiry. Events of one workspace share a partition, so a
    // repeat would come before the reconnection read last.
    let events = connection_events_until_reconnected(&stack, workspace_id, WAIT).await;
    assert_broken_then_reconnected(&events, "qbo", REALM, "invalid_grant");
    let shared = connection_events_until_reconnected(&stack, sharing, WAIT).await;
    assert_eq!(
        connection_transitions(&shared),
        [("UNSPECIFIED", "BROKEN"), ("BROKEN", "CONNECTED")],
        "{shared:?}"
    );
    stack.stop().await;
    sb.stop().await;
}

/// A full pass writes its pages several at once (`pull::PAGE_WRITERS`), each in a transaction
/// of its own: every page is stored and counted exactly once, and the pass reports only when
/// the last of them is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_whose_pages_are_written_at_once_stores_and_counts_every_page_once() {
    let sb = variety_sandbox().await;
    sb.qbo().generate(REALM, "Customer", 4_500).unwrap();
    let (stack, qbo, workspace_id) = connected(&sb).await;
    let first = sync(&qbo, workspace_id, &["Customer"], false).await;
    let mut customers: Vec<(u64, String)> = attributes(&qbo, workspace_id)
        .await
        .into_iter()
        .filter(|a| a.attribute_type == "CUSTOMER")
        .map(|a| (a.destination_id.parse().unwrap(), a.value))
        .collect();
    customers.sort_unstable();
    assert!(customers.len() > 4_500, "{}", customers.len());
    assert_eq!(first.entities[0].outcome, "PULLED_FULL", "{first:?}");
    assert_eq!(
        first.entities[0].fetched as usize,
        customers.len(),
        "{first:?}"
    );

    // The generated sub-customers (none has children of its own, so a rename
    // changes its row alone), spread over every page.
    let renamed: Vec<String> = customers[customers.len() - 4_500..]
        .iter()
        .filter(|(_, value)| value.contains(':'))
        .map(|(id, _)| id.to_string())
        .collect();
    assert!(renamed.len() > 500, "{}", renamed.len());
    for id in &renamed {
        sb.qbo()
            .rename(REALM, "Customer", id, &format!("Paged customer {id}"))
            .unwrap();
    }
    let second = sync(&qbo, workspace_id, &["Customer"], false).await;
    assert_eq!(second.entities[0].outcome, "PULLED_FULL", "{second:?}");
    assert_eq!(
        second.entities[0].fetched as usize,
        customers.len(),
        "{second:?}"
    );
    assert_eq!(
        second.entities[0].changed as usize,
        renamed.len(),
        "{second:?}"
    );
    let stored: BTreeSet<String> = attributes(&qbo, workspace_id)
        .await
        .into_iter()
        .filter(|a| a.attribute_type == "CUSTOMER" && a.value.contains("Paged customer "))
        .map(|a| a.destination_id)
        .collect();
    assert_eq!(stored, renamed.into_iter().collect::<BTreeSet<_>>());
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_never_surfaces_as_a_failed_sync() {
    let sb = variety_sandbox().await;
    sb.qbo().generate(REALM, "Customer", 2_500).unwrap();
    let (stack, paced, workspace_id) = connected(&sb).await;
    // Paced under the limit (the shared PostgreSQL bucket): QBO never has to say 429.
    sb.set_qbo_throttle(attrsync_sandbox::qbo::throttle::ThrottleConfig {
        per_window: 10,
        window_ms: 1_000,
        concurrent: 3,
    });
    let stack_paced = stack
        .start_qbo_sync(
            sb.qbo_url(),
            vec![
                // 6/s against 10 per second: room for a busy machine's jitter.
                ("QBO_SYNC__QBO__REQUESTS_PER_MINUTE".into(), "360".into()),
                ("QBO_SYNC__QBO__MAX_CONCURRENT".into(), "2".into()),
            ],
        )
        .await
        .unwrap();
    drop(paced);
    sb.reset_stats();
    let report = sync(&stack_paced, workspace_id, &[], false).await;
    assert!(
        report.entities.iter().all(|e| e.outcome == "PULLED_FULL"),
        "{report:?}"
    );
    assert_eq!(sb.stats().throttled, 0, "a paced sync is never throttled");

    // Unpaced against a tighter limit: QBO answers 429s, the client rides them out.
    sb.set_qbo_throttle(attrsync_sandbox::qbo::throttle::ThrottleConfig {
        per_window: 3,
        window_ms: 1_000,
        concurrent: 1,
    });
    let unpaced = stack
        .start_qbo_sync(
            sb.qbo_url(),
            vec![("QBO_SYNC__QBO__REQUESTS_PER_MINUTE".into(), "60000".into())],
        )
        .await
        .unwrap();
    sb.reset_stats();
    let report = sync(
        &unpaced,
        workspace_id,
        &["Customer", "Vendor", "Account"],
        false,
    )
    .await;
    assert!(
        report.entities.iter().all(|e| e.outcome == "PULLED_FULL"),
        "{report:?}"
    );
    assert!(sb.stats().throttled > 0, "the limit was hit");
    assert!(
        attributes(&unpaced, workspace_id)
            .await
            .iter()
            .filter(|a| a.attribute_type == "CUSTOMER")
            .count()
            >= 2_500
    );
    stack.stop().await;
    sb.stop().await;
}

/// QBO's 10-requests-in-flight limit is the realm's: two replicas pulling at once share one cap
/// (PostgreSQL slots), so the sandbox never has to refuse one. The sandbox allows one request
/// at a time here and holds each for 300 ms, so with a cap per replica the two passes would
/// overlap and be throttled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_realms_in_flight_cap_and_are_never_throttled() {
    let sb = variety_sandbox().await;
    sb.qbo().generate(REALM, "Customer", 1_500).unwrap();
    sb.qbo().generate(REALM, "Vendor", 1_500).unwrap();
    let stack = TestStack::start().await.unwrap();
    let env = || {
        vec![
            ("QBO_SYNC__QBO__MAX_CONCURRENT".into(), "1".into()),
            ("QBO_SYNC__QBO__REQUESTS_PER_MINUTE".into(), "60000".into()),
        ]
    };
    let first = stack.start_qbo_sync(sb.qbo_url(), env()).await.unwrap();
    let second = stack.start_qbo_sync(sb.qbo_url(), env()).await.unwrap();
    let (workspace_id, _) = stack
        .create_workspace_with_realm(Some(REALM))
        .await
        .unwrap();
    connect(&sb, &first, workspace_id).await;
    sb.set_qbo_throttle(attrsync_sandbox::qbo::throttle::ThrottleConfig {
        per_window: 1_000,
        window_ms: 1_000,
        concurrent: 1,
    });
    sb.faults().add(FaultRule {
        side: Some(Side::Qbo),
        endpoint: "GET /v3/company/{realm}/query".into(),
        action: FaultAction::Latency { ms: 300 },
        skip: 0,
        times: None,
    });
    sb.reset_stats();
    let (customers, vendors) = tokio::join!(
        sync(&first, workspace_id, &["Customer"], false),
        sync(&second, workspace_id, &["Vendor"], false),
    );
    for report in [&customers, &vendors] {
        assert_eq!(report.entities.len(), 1, "{report:?}");
        assert_eq!(report.entities[0].outcome, "PULLED_FULL", "{report:?}");
    }
    let queries = sb.stats().count(Side::Qbo, "GET /v3/company/{realm}/query");
    assert!(queries >= 4, "both passes paged: {queries} queries");
    assert_eq!(sb.stats().throttled, 0, "one request in flight at a time");
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_moved_to_another_company_retires_the_old_companys_rows() {
    const OTHER: &str = "4620816365261100001";
    let sb = variety_sandbox().await;
    sb.qbo().add_realm(OTHER);
    // The other company has a customer with an id the first one also uses.
    sb.qbo()
        .create(
            OTHER,
            "Customer",
            serde_json::json!({"Id": "7", "DisplayName": "Other Co"}),
        )
        .unwrap();
    let (stack, qbo, workspace_id) = connected(&sb).await;
    sync(&qbo, workspace_id, &["Customer"], false).await;
    let before = attributes(&qbo, workspace_id).await;
    assert_eq!(
        row(&before, "CUSTOMER", "7").unwrap().value,
        "Freeman Sporting Goods"
    );

    // mapping moves the workspace to the other company (a newer snapshot of it).
    let mut snapshot = stack
        .mapping
        .clone()
        .get_workspace(attrsync_proto::v1::GetWorkspaceRequest { workspace_id })
        .await
        .unwrap()
        .into_inner();
    snapshot.version += 1000;
    snapshot.workspace.as_mut().unwrap().qbo_realm_id = Some(OTHER.into());
    stack
        .publish_directly(topics::WORKSPACE_SETTINGS, workspace_id, snapshot)
        .await
        .unwrap();
    eventually(
        WAIT,
        "the move reaches qbo-sync and the company is connected",
        || async {
            let connected = qbo
                .client
                .clone()
                .connect_qbo(ConnectQboRequest {
                    workspace_id,
                    realm_id: OTHER.into(),
                    authorization_code: None,
                    refresh_token: sb.qbo().refresh_token(OTHER),
                })
                .await;
            Ok(connected.ok().map(|_| ()))
        },
    )
    .await
    .unwrap();
    let report = sync(&qbo, workspace_id, &["Customer"], false).await;
    assert!(report.pulled, "{report:?}");
    let after = attributes(&qbo, workspace_id).await;
    let seven: Vec<_> = after
        .iter()
        .filter(|a| a.attribute_type == "CUSTOMER" && a.destination_id == "7")
        .collect();
    assert_eq!(seven.len(), 1, "{seven:?}");
    assert_eq!(seven[0].value, "Other Co");
    assert!(seven[0].active);
    assert!(
        row(&after, "CUSTOMER", "8").is_none(),
        "the first company's other customers are gone"
    );
    // The retired rows were announced, so downstream retires what they stood for.
    let topic = stack.topic(topics::DESTINATION_ATTRIBUTES_CHANGED);
    let messages = read_until(&topic, WAIT, |messages| {
        messages.iter().any(|m| retired_freeman(&m.payload))
    })
    .await
    .unwrap();
    assert!(messages.iter().any(|m| retired_freeman(&m.payload)));
    stack.stop().await;
    sb.stop().await;
}

fn retired_freeman(payload: &[u8]) -> bool {
    let Ok(envelope) = envelope::decode(payload) else {
        return false;
    };
    let Some(Payload::DestinationAttributesChanged(event)) = envelope.payload else {
        return false;
    };
    event.origin == "realm_change"
        && event.changes.iter().any(|c| {
            c.destination_id == "7"
                && c.value == "Freeman Sporting Goods"
                && c.kind == ChangeKind::Deactivated as i32
        })
}

/// The version rule of `qbo_sync::store` on its own, against the real PostgreSQL.
mod version_rule {
    use attrsync_db::testing::TestDatabase;
    use chrono::{DateTime, Duration as Delta, Utc};
    use diesel_async::{AsyncConnection, AsyncPgConnection};
    use qbo_sync::{
        rules::{AttributeType, DestinationDraft, display_name},
        store::{self, Deactivation},
    };

    async fn connection() -> (TestDatabase, AsyncPgConnection) {
        let db = attrsync_e2e::test_database().await;
        let url = attrsync_db::url_with_schema(&db.url, "qbo_sync").unwrap();
        let conn = AsyncPgConnection::establish(&url).await.unwrap();
        (db, conn)
    }

    fn customer(value: &str, active: bool, at: DateTime<Utc>, token: &str) -> DestinationDraft {
        DestinationDraft {
            attribute_type: AttributeType::Customer,
            display_name: display_name::CUSTOMER,
            destination_id: "58".into(),
            value: value.into(),
            code: None,
            active,
            detail: serde_json::Value::Null,
            last_updated_time: Some(at),
            sync_token: Some(token.into()),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pull_page_read_before_a_delete_does_not_reactivate_the_row() {
        let (_db, mut conn) = connection().await;
        let t0 = Utc::now() - Delta::hours(1);
        let page_copy = customer("Blue Harbor", true, t0, "1");
        assert_eq!(
            store::upsert(&mut conn, 1, "Customer", std::slice::from_ref(&page_copy))
                .await
                .unwrap()
                .len(),
            1
        );
        // A Merge webhook deactivates it here (no newer QBO stamp known).
        let gone = store::deactivate(&mut conn, 1, "Customer", Deactivation::Ids(&["58".into()]))
            .await
            .unwrap();
        assert_eq!(gone.len(), 1);
        // The pull's page, read before the merge, is written after it: same stamp, no effect.
        let written = store::upsert(&mut conn, 1, "Customer", &[page_copy])
            .await
            .unwrap();
        assert!(written.is_empty(), "{written:?}");
        // A copy QBO stamped later does bring it back.
        let later = customer("Blue Harbor", true, t0 + Delta::seconds(1), "2");
        let written = store::upsert(&mut conn, 1, "Customer", &[later])
            .await
            .unwrap();
        assert_eq!(written.len(), 1);
        assert!(written[0].active);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_saves_in_one_second_keep_the_higher_sync_token() {
        let (_db, mut conn) = connection().await;
        let t = Utc::now() - Delta::hours(1);
        store::upsert(
            &mut conn,
            1,
            "Customer",
            &[customer("Newer name", true, t, "3")],
        )
        .await
        .unwrap();
        let stale = store::upsert(
            &mut conn,
            1,
            "Customer",
            &[customer("Older name", true, t, "2")],
        )
        .await
        .unwrap();
        assert!(
            stale.is_empty(),
            "an older save of the same second changed the row: {stale:?}"
        );
        let newer = store::upsert(
            &mut conn,
            1,
            "Customer",
            &[customer("Newest", true, t, "4")],
        )
        .await
        .unwrap();
        assert_eq!(newer.len(), 1);
        assert_eq!(newer[0].value, "Newest");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_another_writer_inserts_after_the_lock_is_written_by_the_version_rule() {
        let (db, mut first) = connection().await;
        let url = attrsync_db::url_with_schema(&db.url, "qbo_sync").unwrap();
        let mut second = AsyncPgConnection::establish(&url).await.unwrap();
        let t = Utc::now() - Delta::hours(1);
        let (inserted_tx, inserted_rx) = tokio::sync::oneshot::channel::<()>();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        // The first writer inserts key 58 and holds its transaction open…
        let first_writer = tokio::spawn(async move {
            first
                .transaction::<_, diesel::result::Error, _>(async |c| {
                    store::upsert(c, 1, "Customer", &[customer("First", true, t, "1")]).await?;
                    let _ = inserted_tx.send(());
                    let _ = go_rx.await;
                    Ok(())
                })
                .await
        });
        inserted_rx.await.unwrap();
        // …so a newer copy finds no row to lock, takes the plain insert and waits for it.
        let newer = customer("Second", true, t + Delta::seconds(1), "2");
        // In a transaction, as a pull's page is: the plain insert runs in a savepoint.
        let second_writer = tokio::spawn(async move {
            second
                .transaction::<_, diesel::result::Error, _>(async |c| {
                    store::upsert(c, 1, "Customer", &[newer]).await
                })
                .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(
            !second_writer.is_finished(),
            "the second insert waits for the first writer's key"
        );
        go_tx.send(()).unwrap();
        first_writer.await.unwrap().unwrap();
        // Its insert fails on the key, is undone, and the copy goes through the version rule.
        let written = second_writer.await.unwrap().unwrap();
        assert_eq!(written.len(), 1, "{written:?}");
        assert_eq!(written[0].value, "Second");
        assert_eq!(
            written[0].previous.old_value.as_deref(),
            Some("First"),
            "reported as a change of the first writer's row"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_far_future_stamp_does_not_freeze_the_row() {
        let (_db, mut conn) = connection().await;
        let future = Utc::now() + Delta::days(365);
        store::upsert(
            &mut conn,
            1,
            "Customer",
            &[customer("Forged", true, future, "1")],
        )
        .await
        .unwrap();
        let real = customer("Real", true, Utc::now() + Delta::minutes(10), "2");
        let written = store::upsert(&mut conn, 1, "Customer", &[real])
            .await
            .unwrap();
        assert_eq!(written.len(), 1, "the stored stamp was capped near now");
        assert_eq!(written[0].value, "Real");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watermark_older_than_cdcs_thirty_days_falls_back_to_a_full_pull() {
    let sb = variety_sandbox().await;
    let (stack, qbo, workspace_id) = connected(&sb).await;
    sync(&qbo, workspace_id, &["Vendor"], false).await;
    let cdc = sync(&qbo, workspace_id, &["Vendor"], true).await;
    assert_eq!(cdc.entities[0].outcome, "PULLED_CDC", "{cdc:?}");
    // The workspace was not pulled for 40 days: CDC cannot look back that far.
    let url = attrsync_db::url_with_schema(&stack.database.url, "qbo_sync").unwrap();
    use diesel_async::{AsyncConnection as _, RunQueryDsl as _};
    let mut conn = diesel_async::AsyncPgConnection::establish(&url)
        .await
        .unwrap();
    let moved = diesel::sql_query(format!(
        "UPDATE qbo_sync_state SET watermark = now() - interval '40 days' \
         WHERE workspace_id = {workspace_id} AND qbo_entity = 'Vendor'"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(moved, 1);
    let before = qbo_requests(&sb);
    let fallback = sync(&qbo, workspace_id, &["Vendor"], true).await;
    assert_eq!(fallback.entities[0].outcome, "PULLED_FULL", "{fallback:?}");
    assert!(qbo_requests(&sb) > before, "the full pull read QBO");
    let cdc_calls = sb
        .stats()
        .count_where(Side::Qbo, |endpoint| endpoint.contains("/cdc"));
    assert_eq!(cdc_calls, 1, "only the first incremental pass asked CDC");
    stack.stop().await;
    sb.stop().await;
}

/// The stored value and activity of each id among `ids` of `entity`, as the sandbox holds the
/// entity now: `FullyQualifiedName` (else `Name`) without QBO's ` (deleted)` suffix (#32), and
/// `Active`.
fn qbo_names(sb: &SandboxHandle, entity: &str, ids: &[u64]) -> Vec<(String, String, bool)> {
    ids.iter()
        .map(|id| {
            let e = sb.qbo().get(REALM, entity, &id.to_string()).unwrap();
            let name = e["FullyQualifiedName"]
                .as_str()
                .or(e["Name"].as_str())
                .unwrap()
                .trim_end_matches(" (deleted)")
                .to_owned();
            (id.to_string(), name, e["Active"] != false)
        })
        .collect()
}

/// Incumbent §2.2's rules through the real pull, for the cases the unit tests cover on
/// hand-made JSON: every Item type (a Category item is skipped, its sub-item kept by its full
/// name, an inactive item stored inactive; items appear only while `import_items` is on and
/// are retired when it goes off), hierarchies of accounts, classes, departments and customers
/// named by `FullyQualifiedName`, and tax codes whose purchase rates are summed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_item_type_hierarchy_and_multi_rate_tax_code_is_stored_by_the_rules() {
    let sb = variety_sandbox().await;
    let (stack, qbo, workspace_id) = connected(&sb).await;
    let report = sync(&qbo, workspace_id, &[], false).await;
    assert!(report.pulled, "{report:?}");
    let rows = attributes(&qbo, workspace_id).await;
    assert!(
        rows.iter().all(|a| a.display_name != "Item"),
        "no items while import_items is off"
    );

    // Hierarchies: the full name, parent first.
    for (attribute_type, entity, ids) in [
        ("ACCOUNT", "Account", &[220_u64, 221, 222][..]),
        ("CLASS", "Class", &[300, 301, 302, 303, 304]),
        ("DEPARTMENT", "Department", &[310, 311, 312]),
        ("CUSTOMER", "Customer", &[7, 70, 71]),
    ] {
        for (id, name, active) in qbo_names(&sb, entity, ids) {
            let stored = row(&rows, attribute_type, &id)
                .unwrap_or_else(|| panic!("{entity} {id} stored as {attribute_type}"));
            assert_eq!(
                (&stored.value, stored.active),
                (&name, active),
                "{entity} {id}"
            );
        }
    }
    assert_eq!(
        row(&rows, "ACCOUNT", "222").unwrap().value,
        "Travel:Airfare:International"
    );
    assert_eq!(
        row(&rows, "CLASS", "302").unwrap().value,
        "East:Boston:Back Bay"
    );
    assert_eq!(
        row(&rows, "DEPARTMENT", "311").unwrap().value,
        "Operations:Warehouse"
    );
    assert!(
        row(&rows, "CUSTOMER", "70")
            .unwrap()
            .value
            .ends_with(":Warehouse Refit"),
        "a sub-customer is named under its parent"
    );

    // Tax codes: only those with purchase rates, named with the sum of their rates.
    let tax = |id: &str| row(&rows, "TAX_CODE", id);
    let both = tax("10").expect("GST+PST has two purchase rates");
    assert_eq!(both.value, "GST+PST @17%");
    let detail: serde_json::Value = serde_json::from_str(&both.detail_json).unwrap();
    assert_eq!(detail["tax_rate"], 17.0, "{detail}");
    assert_eq!(
        detail["tax_refs"].as_array().map(Vec::len),
        Some(2),
        "{detail}"
    );
    assert!(
        tax("11").is_none(),
        "a sales-only code is not an expense tax"
    );
    assert_eq!(tax("12").unwrap().value, "Purchase Only @8%");
    assert_eq!(
        tax("13").unwrap().value,
        "Uses Old Rate @3%",
        "an inactive rate still prices the codes that use it"
    );
    let retired = tax("14").unwrap();
    assert_eq!(
        (retired.value.as_str(), retired.active),
        ("Retired @10%", false)
    );

    // Items on: every type but Category, by full name, with its activity.
    let items_on = |import_items| UpdateImportSettingsRequest {
        workspace_id,
        import_settings: Some(ImportSettings {
            import_categories: true,
            import_items,
            ..Default::default()
        }),
        mapping_settings: Vec::new(),
    };
    stack
        .mapping
        .clone()
        .update_import_settings(items_on(true))
        .await
        .unwrap();
    let item_rows = |rows: &[DestinationAttribute]| -> Vec<(String, String, bool)> {
        let mut items: Vec<_> = rows
            .iter()
            .filter(|a| a.display_name == "Item")
            .map(|a| (a.destination_id.clone(), a.value.clone(), a.active))
            .collect();
        items.sort();
        items
    };
    // The settings reach qbo-sync's projection a moment later; each try pulls items again.
    let stored = eventually(WAIT, "the items stored", || async {
        sync(&qbo, workspace_id, &["Item"], false).await;
        let items = item_rows(&attributes(&qbo, workspace_id).await);
        Ok((!items.is_empty()).then_some(items))
    })
    .await
    .unwrap();
    // Every stored item is a QBO item that is not a Category, by its name and activity …
    for (id, value, active) in &stored {
        let item = sb.qbo().get(REALM, "Item", id).unwrap();
        assert_ne!(item["Type"], "Category", "item {id}");
        let id_number: u64 = id.parse().unwrap();
        assert_eq!(
            qbo_names(&sb, "Item", &[id_number]),
            [(id.clone(), value.clone(), *active)]
        );
    }
    // … and every item of the seed's variety but the Category one is stored.
    let variety: BTreeSet<&str> = stored
        .iter()
        .map(|(id, _, _)| id.as_str())
        .filter(|id| id.parse().is_ok_and(|n: u64| (100..=106).contains(&n)))
        .collect();
    assert_eq!(variety, ["100", "101", "102", "103", "105", "106"].into());
    let types: BTreeSet<String> = (100..=106)
        .map(|id| {
            let item = sb.qbo().get(REALM, "Item", &id.to_string()).unwrap();
            item["Type"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        types,
        ["Category", "Group", "Inventory", "NonInventory", "Service"]
            .map(str::to_owned)
            .into(),
        "the seed holds every item type"
    );
    assert!(stored.contains(&("105".into(), "Hardware:Hammers".into(), true)));
    assert!(stored.contains(&("106".into(), "Discontinued".into(), false)));

    // Items off: the stored items are retired, the accounts stay.
    stack
        .mapping
        .clone()
        .update_import_settings(items_on(false))
        .await
        .unwrap();
    eventually(WAIT, "the items retired", || async {
        sync(&qbo, workspace_id, &["Item"], false).await;
        let items = item_rows(&attributes(&qbo, workspace_id).await);
        Ok(items.iter().all(|(_, _, active)| !active).then_some(()))
    })
    .await
    .unwrap();
    let after = attributes(&qbo, workspace_id).await;
    assert!(row(&after, "ACCOUNT", "222").is_some_and(|a| a.active));
    stack.stop().await;
    sb.stop().await;
}
