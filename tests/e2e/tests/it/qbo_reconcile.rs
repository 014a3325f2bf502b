//! qbo-sync's safety net over the real stack and the QBO sandbox, with the sandbox delivering
//! no webhooks at all (no webhook URL set): the scheduled reconcile finds changes no webhook
//! brought and counts them as missed, a workspace missing more than the threshold turns
//! DEGRADED (event on `sync.webhook-health.v1`, status) and returns to HEALTHY after clean
//! windows, a workspace not on webhooks keeps the 24-hour rule and counts nothing, and two
//! replicas never run the same round twice.

use std::{collections::HashMap, time::Duration};

use attrsync_e2e::{TestStack, eventually, qbo::QboSyncHandle};
use attrsync_kafka::{envelope, topics};
use attrsync_proto::{
    Payload,
    v1::{
        ConnectQboRequest, EntitySyncState, GetQboSyncStatusRequest,
        ListDestinationAttributesRequest, QboSyncStatus, SyncQboDimensionsRequest,
        UpdateWebhookFlagsRequest, WebhookHealth, WebhookHealthChanged,
    },
};
use attrsync_sandbox::{Sandbox, SandboxConfig, SandboxHandle, Seed, Side};

use crate::kafka_reader::{Raw, read_until};

const WAIT: Duration = Duration::from_secs(60);
const REALM: &str = "9130357766900456";
/// Entities CDC reports: one CDC request each per reconcile round.
const CDC_ENTITIES: u64 = 7;

async fn variety_sandbox() -> SandboxHandle {
    Sandbox::start(SandboxConfig {
        seed: Seed::Variety,
        workers: 1,
        ..SandboxConfig::default()
    })
    .await
    .unwrap()
}

/// Quick rounds: HEALTHY every 2 s, DEGRADED every 1 s, objects younger than 2 s left to the
/// next round, DEGRADED above one missed webhook per window, HEALTHY after two clean windows.
pub(crate) fn fast_rounds() -> Vec<(String, String)> {
    [
        ("QBO_SYNC__RECONCILE__TICK", "100ms"),
        ("QBO_SYNC__RECONCILE__INTERVAL", "2s"),
        ("QBO_SYNC__RECONCILE__DEGRADED_INTERVAL", "1s"),
        ("QBO_SYNC__RECONCILE__GRACE", "2s"),
        ("QBO_SYNC__RECONCILE__DEGRADE_ABOVE", "1"),
        ("QBO_SYNC__RECONCILE__RECOVER_AFTER", "2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

async fn connect(sb: &SandboxHandle, qbo: &QboSyncHandle, workspace_id: i64) {
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
}

pub(crate) async fn status(qbo: &QboSyncHandle, workspace_id: i64) -> QboSyncStatus {
    qbo.client
        .clone()
        .get_sync_status(GetQboSyncStatusRequest { workspace_id })
        .await
        .unwrap()
        .into_inner()
}

pub(crate) fn entity(status: &QboSyncStatus, name: &str) -> Option<EntitySyncState> {
    status.entities.iter().find(|e| e.entity == name).cloned()
}

fn health(status: &QboSyncStatus) -> String {
    status.health.clone().unwrap_or_default().state
}

/// Active vendors stored, by id.
async fn vendors(qbo: &QboSyncHandle, workspace_id: i64) -> Vec<String> {
    qbo.client
        .clone()
        .list_destination_attributes(ListDestinationAttributesRequest {
            workspace_id,
            attribute_type: Some("VENDOR".into()),
            active: Some(true),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .attributes
        .into_iter()
        .map(|a| a.destination_id)
        .collect()
}

/// The stored value of vendor `id`.
async fn vendor(qbo: &QboSyncHandle, workspace_id: i64, id: &str) -> Option<String> {
    qbo.client
        .clone()
        .list_destination_attributes(ListDestinationAttributesRequest {
            workspace_id,
            attribute_type: Some("VENDOR".into()),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .attributes
        .into_iter()
        .find(|a| a.destination_id == id)
        .map(|a| a.value)
}

/// Waits until every entity has had a pass recorded as `run` (the scheduler's first round).
async fn wait_for_runs(qbo: &QboSyncHandle, workspace_id: i64, entity_name: &str, run: &str) {
    eventually(WAIT, &format!("{entity_name} ran {run}"), || async {
        let s = status(qbo, workspace_id).await;
        Ok(entity(&s, entity_name)
            .filter(|e| e.last_run == run)
            .map(|_| ()))
    })
    .await
    .unwrap();
}

/// QBO CDC requests the sandbox served.
fn cdc_requests(sb: &SandboxHandle) -> u64 {
    sb.stats()
        .count_where(Side::Qbo, |endpoint| endpoint.ends_with("/cdc"))
}

fn health_event(raw: &Raw, workspace_id: i64) -> Option<WebhookHealthChanged> {
    let envelope = envelope::decode(&raw.payload).ok()?;
    if envelope.workspace_id != workspace_id {
        return None;
    }
    match envelope.payload {
        Some(Payload::WebhookHealthChanged(e)) if e.source == "qbo" => Some(e),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_no_webhook_brought_are_found_counted_and_degrade_health_until_clean_windows() {
    let sb = variety_sandbox().await;
    sb.qbo().generate(REALM, "Vendor", 3).unwrap();
    let stack = TestStack::start().await.unwrap();
    let qbo = stack
        .start_qbo_sync(sb.qbo_url(), fast_rounds())
        .await
        .unwrap();
    let (workspace_id, _) = stack
        .create_workspace_with_realm(Some(REALM))
        .await
        .unwrap();
    connect(&sb, &qbo, workspace_id).await;
    // The first round is a baseline; the next ones reconcile and judge.
    wait_for_runs(&qbo, workspace_id, "Vendor", "RECONCILE").await;
    let first = status(&qbo, workspace_id).await;
    assert_eq!(health(&first), "HEALTHY");
    let vendor_state = entity(&first, "Vendor").unwrap();
    assert!(vendor_state.webhook_mode, "webhooks are on by default");
    assert_eq!(
        vendor_state.missed_webhooks, 0,
        "the baseline judges nothing"
    );
    let tax = entity(&first, "TaxCode").unwrap();
    assert!(!tax.webhook_mode, "tax codes never arrive by webhook");

    // Three vendors change in QBO; the sandbox sends no webhook (no URL is set).
    let ids: Vec<String> = vendors(&qbo, workspace_id)
        .await
        .into_iter()
        .take(3)
        .collect();
    assert_eq!(ids.len(), 3);
    for id in &ids {
        sb.qbo()
            .rename(REALM, "Vendor", id, &format!("Missed webhook vendor {id}"))
            .unwrap();
    }
    for id in &ids {
        eventually(WAIT, &format!("vendor {id} reconciled"), || async {
            Ok(vendor(&qbo, workspace_id, id)
                .await
                .filter(|v| v.starts_with("Missed webhook vendor"))
                .map(|_| ()))
        })
        .await
        .unwrap();
    }
    // Each change the reconcile had to apply is a missed webhook, counted once (the pass
    // records its counts just after its writes, so wait for the record).
    eventually(
        WAIT,
        "three missed webhooks recorded for Vendor",
        || async {
            let s = status(&qbo, workspace_id).await;
            Ok(entity(&s, "Vendor")
                .filter(|v| v.missed_webhooks >= 3)
                .map(|_| ()))
        },
    )
    .await
    .unwrap();
    let after = status(&qbo, workspace_id).await;
    assert_eq!(entity(&after, "Vendor").unwrap().missed_webhooks, 3);
    assert_eq!(entity(&after, "Customer").unwrap().missed_webhooks, 0);

    // One window missed more than one: DEGRADED, announced; then two clean windows: HEALTHY.
    let topic = stack.topic(topics::WEBHOOK_HEALTH);
    let raws = read_until(&topic, WAIT, |seen| {
        seen.iter()
            .filter_map(|r| health_event(r, workspace_id))
            .count()
            >= 2
    })
    .await
    .unwrap();
    let events: Vec<WebhookHealthChanged> = raws
        .iter()
        .filter_map(|r| health_event(r, workspace_id))
        .collect();
    assert!(events.len() >= 2, "{events:?}");
    let degraded = &events[0];
    assert_eq!(degraded.previous, WebhookHealth::Healthy as i32);
    assert_eq!(degraded.current, WebhookHealth::Degraded as i32);
    assert!(degraded.missed_in_window >= 2, "{degraded:?}");
    assert!(degraded.missed_by_resource.contains_key("Vendor"));
    assert_eq!(degraded.poll_interval_seconds, 1, "polling takes over");
    assert_eq!((degraded.degrade_above, degraded.recover_after), (1, 2));
    let recovered = &events[1];
    assert_eq!(recovered.current, WebhookHealth::Healthy as i32);
    assert_eq!(recovered.clean_windows, 2);
    assert_eq!(recovered.missed_in_window, 0);
    assert_eq!(recovered.poll_interval_seconds, 2);

    let end = status(&qbo, workspace_id).await;
    let h = end.health.clone().unwrap();
    assert_eq!(h.state, "HEALTHY");
    assert_eq!(h.missed_total, 3);
    assert!(h.changed_at.is_some() && h.next_round_at.is_some());
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_not_on_qbo_webhooks_keeps_the_24_hour_rule_and_misses_nothing() {
    let sb = variety_sandbox().await;
    let stack = TestStack::start().await.unwrap();
    let qbo = stack
        .start_qbo_sync(sb.qbo_url(), fast_rounds())
        .await
        .unwrap();
    let (workspace_id, _) = stack
        .create_workspace_with_realm(Some(REALM))
        .await
        .unwrap();
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
    connect(&sb, &qbo, workspace_id).await;
    // The first round pulls every entity in full (never pulled), and the status says the
    // entities are not in webhook mode once qbo-sync's projection has the flag.
    eventually(
        WAIT,
        "a full pull of every entity, out of webhook mode",
        || async {
            let s = status(&qbo, workspace_id).await;
            Ok((s.entities.len() == 8
                && s.entities
                    .iter()
                    .all(|e| e.last_run == "RECONCILE_FULL" && !e.webhook_mode))
            .then_some(()))
        },
    )
    .await
    .unwrap();
    let pulled = entity(&status(&qbo, workspace_id).await, "Vendor").unwrap();
    sb.qbo()
        .rename(REALM, "Vendor", "30", "Renamed while off webhooks")
        .unwrap();
    // Several rounds pass (2 s apart): within 24 hours nothing is pulled again.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let later = status(&qbo, workspace_id).await;
    let vendor_state = entity(&later, "Vendor").unwrap();
    assert_eq!(
        vendor_state.last_full_sync_at, pulled.last_full_sync_at,
        "the 24-hour rule"
    );
    assert_eq!(vendor_state.missed_webhooks, 0);
    assert_eq!(
        vendor(&qbo, workspace_id, "30").await.as_deref(),
        Some("Books by Bessie"),
        "not pulled within the 24 hours"
    );
    let h = later.health.unwrap();
    assert_eq!((h.state.as_str(), h.missed_total), ("HEALTHY", 0));
    assert!(h.last_window_at.is_none(), "no window was judged");
    // A forced pull brings it: the rename was there to be found.
    qbo.client
        .clone()
        .sync_dimensions(SyncQboDimensionsRequest {
            workspace_id,
            force: true,
            attribute_types: vec!["Vendor".into()],
            incremental: false,
        })
        .await
        .unwrap();
    assert_eq!(
        vendor(&qbo, workspace_id, "30").await.as_deref(),
        Some("Renamed while off webhooks")
    );
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_run_the_same_round_twice() {
    let sb = variety_sandbox().await;
    let stack = TestStack::start().await.unwrap();
    let mut env = fast_rounds();
    env.push(("QBO_SYNC__RECONCILE__TICK".into(), "50ms".into()));
    let first = stack
        .start_qbo_sync(sb.qbo_url(), env.clone())
        .await
        .unwrap();
    let _second = stack.start_qbo_sync(sb.qbo_url(), env).await.unwrap();
    let (workspace_id, _) = stack
        .create_workspace_with_realm(Some(REALM))
        .await
        .unwrap();
    connect(&sb, &first, workspace_id).await;
    wait_for_runs(&first, workspace_id, "Vendor", "RECONCILE").await;
    // Rounds are 2 s apart: in 8 s at most five rounds, one CDC request per entity each. Both
    // replicas running every round would cost twice that.
    let windows = |s: &QboSyncStatus| s.health.clone().unwrap_or_default().clean_windows;
    let windows_before = windows(&status(&first, workspace_id).await);
    let before = cdc_requests(&sb);
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let spent = cdc_requests(&sb) - before;
    let windows_after = windows(&status(&first, workspace_id).await);
    let rounds_at_most = started.elapsed().as_secs() / 2 + 1;
    // Each round is one (clean) window: counted once, whichever replica ran it.
    let rounds = windows_after - windows_before;
    assert!(
        (2..=u32::try_from(rounds_at_most).unwrap()).contains(&rounds),
        "{rounds} windows in {:?}",
        started.elapsed()
    );
    assert!(spent >= CDC_ENTITIES, "rounds ran: {spent} CDC requests");
    assert!(
        spent <= CDC_ENTITIES * rounds_at_most,
        "{spent} CDC requests in {:?}: more than {rounds_at_most} rounds",
        started.elapsed()
    );
    let per_entity: HashMap<String, u64> = status(&first, workspace_id)
        .await
        .entities
        .into_iter()
        .map(|e| (e.entity, e.missed_webhooks))
        .collect();
    assert!(per_entity.values().all(|m| *m == 0), "{per_entity:?}");
    stack.stop().await;
    sb.stop().await;
}

/// In webhook mode the rounds reconcile by CDC, and once `pulls.min_interval` (a day; 6 s here)
/// has passed since an entity's last full pass, a round reads it in full again, judged — the
/// pass that finds what neither a webhook nor CDC brought (a deletion older than CDC's 30 days,
/// a CDC answer stopped at its cap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_webhook_mode_a_judged_full_pass_runs_once_the_day_has_passed() {
    let sb = variety_sandbox().await;
    let stack = TestStack::start().await.unwrap();
    let mut env = fast_rounds();
    env.push(("QBO_SYNC__PULLS__MIN_INTERVAL".into(), "6s".into()));
    let qbo = stack.start_qbo_sync(sb.qbo_url(), env).await.unwrap();
    let (workspace_id, _) = stack
        .create_workspace_with_realm(Some(REALM))
        .await
        .unwrap();
    connect(&sb, &qbo, workspace_id).await;
    // The baseline (a full pass), then CDC reconciles.
    wait_for_runs(&qbo, workspace_id, "Vendor", "RECONCILE").await;
    let baseline = entity(&status(&qbo, workspace_id).await, "Vendor").unwrap();
    assert!(baseline.webhook_mode);
    let baseline_full = baseline.last_full_sync_at.unwrap();
    let full = eventually(WAIT, "a second full pass of vendors", || async {
        let vendor = entity(&status(&qbo, workspace_id).await, "Vendor").unwrap();
        Ok((vendor
            .last_full_sync_at
            .is_some_and(|t| t.seconds > baseline_full.seconds)
            && vendor.last_run == "RECONCILE_FULL")
            .then_some(vendor))
    })
    .await
    .unwrap();
    assert!(full.webhook_mode, "still in webhook mode: {full:?}");
    let elapsed = full.last_full_sync_at.unwrap().seconds - baseline_full.seconds;
    assert!(elapsed >= 6, "not before the day passed: {elapsed} s");
    stack.stop().await;
    sb.stop().await;
}
