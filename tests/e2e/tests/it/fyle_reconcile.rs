//! fyle-sync's safety net over the real stack, with the Fyle sandbox delivering real webhooks
//! to ingest: ConnectFyle registers the webhook subscription with ingest's URL (once, however
//! often it is called; later when ingest is unreachable), the scheduled reconcile finds a
//! change whose webhook was dropped and counts it, a workspace missing more webhooks than the
//! threshold turns DEGRADED (event on `sync.webhook-health.v1`, status, metric) and returns to
//! HEALTHY after clean windows, and a workspace without webhooks keeps the 24-hour rule.

use std::time::Duration;

use attrsync_e2e::{TestStack, eventually, proxy::SilentProxy, scratch::free_port};
use attrsync_kafka::topics;
use attrsync_proto::{
    Payload,
    v1::{
        ConnectFyleRequest, ConnectFyleResponse, CreateWorkspaceRequest, FyleSyncStatus,
        GetFyleSyncStatusRequest, GetWebhookEndpointRequest, ListExpenseAttributesRequest,
        ResourceSyncState, RotateWebhookSecretRequest, WebhookFlags, WebhookHealth,
        WebhookHealthChanged, WorkspaceSettings,
    },
};
use attrsync_sandbox::{DEMO_ORG_ID, SandboxHandle, Side, WebhookFaultAction, WebhookFaultRule};
use serde_json::Value;

use crate::{
    fyle_connection::{demo_refresh_token, demo_sandbox},
    kafka_reader::read_until,
};

const WAIT: Duration = Duration::from_secs(60);
const CATEGORIES: &str = "GET /platform/v1/admin/categories";
/// Seeded categories of the demo org.
const TRAVEL: &str = "22330021";
const MEALS: &str = "22330022";

/// A stack whose ingest serves webhooks on a port chosen up front and hands out URLs on it, so
/// the sandbox's deliveries reach it; fyle-sync connects to `sb` and schedules rounds every
/// second (HEALTHY: 2 s, DEGRADED: 1 s), judging rows older than 3 s, degrading above one
/// missed webhook per window and recovering after two clean windows.
pub(crate) async fn reconcile_stack(sb: &SandboxHandle, extra: Vec<(String, String)>) -> TestStack {
    let http = free_port(&[]);
    let mut fyle_sync = fast_rounds(sb);
    fyle_sync.extend(extra);
    TestStack::start_with_env(
        vec![
            ("INGEST__HTTP__LISTEN".into(), format!("127.0.0.1:{http}")),
            (
                "INGEST__WEBHOOKS__PUBLIC_URL".into(),
                format!("http://127.0.0.1:{http}"),
            ),
        ],
        fyle_sync,
    )
    .await
    .unwrap()
}

/// A stack the sandbox's webhooks reach, with no scheduled rounds: only webhooks and the
/// pulls a test asks for store attributes.
pub(crate) async fn webhooks_only_stack(sb: &SandboxHandle) -> TestStack {
    reconcile_stack(
        sb,
        vec![("FYLE_SYNC__RECONCILE__ENABLED".into(), "false".into())],
    )
    .await
}

/// A second fyle-sync on `stack`'s database, topics and consumer group — a replica — with
/// `extra` settings; stop it with the token.
pub(crate) async fn start_replica(
    stack: &TestStack,
    extra: Vec<(String, String)>,
) -> (
    attrsync_runtime::Running,
    tokio_util::sync::CancellationToken,
) {
    let addrs = stack.grpc_addrs();
    let mut env = attrsync_e2e::service_env(
        "fyle-sync",
        &stack.database.url,
        &stack.topic_prefix,
        Some(addrs.mapping),
    );
    env.push((
        "FYLE_SYNC__INGEST__ENDPOINT".into(),
        format!("http://{}", addrs.ingest),
    ));
    env.extend(extra);
    let config =
        <fyle_sync::Config as attrsync_config::ServiceConfig>::from_env_pairs(env).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let replica = fyle_sync::start(config, shutdown.clone()).await.unwrap();
    (replica, shutdown)
}

/// fyle-sync's settings for `sb` and quick rounds (see [`reconcile_stack`]).
fn fast_rounds(sb: &SandboxHandle) -> Vec<(String, String)> {
    vec![
        (
            "FYLE_SYNC__FYLE__ACCOUNTS_URL".to_owned(),
            sb.fyle_accounts_url().to_owned(),
        ),
        ("FYLE_SYNC__RECONCILE__TICK".into(), "200ms".into()),
        ("FYLE_SYNC__RECONCILE__INTERVAL".into(), "2s".into()),
        (
            "FYLE_SYNC__RECONCILE__DEGRADED_INTERVAL".into(),
            "1s".into(),
        ),
        ("FYLE_SYNC__RECONCILE__GRACE".into(), "3s".into()),
        ("FYLE_SYNC__RECONCILE__DEGRADE_ABOVE".into(), "1".into()),
        ("FYLE_SYNC__RECONCILE__RECOVER_AFTER".into(), "2".into()),
        (
            "FYLE_SYNC__SUBSCRIPTIONS__RETRY_INTERVAL".into(),
            "500ms".into(),
        ),
    ]
}

pub(crate) async fn connect(
    stack: &TestStack,
    sb: &SandboxHandle,
    workspace_id: i64,
) -> ConnectFyleResponse {
    stack
        .fyle_sync
        .clone()
        .connect_fyle(ConnectFyleRequest {
            workspace_id,
            refresh_token: Some(demo_refresh_token(sb)),
            authorization_code: None,
        })
        .await
        .unwrap()
        .into_inner()
}

pub(crate) async fn status(stack: &TestStack, workspace_id: i64) -> FyleSyncStatus {
    stack
        .fyle_sync
        .clone()
        .get_sync_status(GetFyleSyncStatusRequest { workspace_id })
        .await
        .unwrap()
        .into_inner()
}

pub(crate) fn category(status: &FyleSyncStatus) -> ResourceSyncState {
    status
        .resources
        .iter()
        .find(|r| r.attribute_type == "CATEGORY")
        .cloned()
        .unwrap()
}

fn health(status: &FyleSyncStatus) -> String {
    status.health.clone().unwrap_or_default().state
}

/// The stored value of a category.
async fn category_value(stack: &TestStack, workspace_id: i64, source_id: &str) -> Option<String> {
    stack
        .fyle_sync
        .clone()
        .list_expense_attributes(ListExpenseAttributesRequest {
            workspace_id,
            attribute_type: Some("CATEGORY".into()),
            source_id: Some(source_id.into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .attributes
        .first()
        .map(|a| a.value.clone())
}

async fn wait_for_value(stack: &TestStack, workspace_id: i64, source_id: &str, prefix: &str) {
    eventually(
        WAIT,
        &format!("{source_id} stored as {prefix}…"),
        || async {
            Ok(category_value(stack, workspace_id, source_id)
                .await
                .filter(|v| v.starts_with(prefix))
                .map(|_| ()))
        },
    )
    .await
    .unwrap();
}

/// The demo org's subscriptions in the sandbox (each test has a sandbox of its own).
fn subscription_count(sb: &SandboxHandle) -> usize {
    sb.fyle().count(DEMO_ORG_ID, "subscriptions")
}

/// A subscription as the sandbox stores it, by the id fyle-sync reports.
fn subscription(sb: &SandboxHandle, id: &str) -> Value {
    sb.fyle()
        .get(DEMO_ORG_ID, "subscriptions", id)
        .unwrap_or_else(|| panic!("subscription {id} is not in the sandbox"))
}

async fn subscription_id(stack: &TestStack, workspace_id: i64) -> String {
    status(stack, workspace_id)
        .await
        .webhook_subscription
        .unwrap()
        .subscription_id
}

async fn endpoint_url(stack: &TestStack, workspace_id: i64) -> String {
    stack
        .ingest
        .clone()
        .get_webhook_endpoint(GetWebhookEndpointRequest { workspace_id })
        .await
        .unwrap()
        .into_inner()
        .url
}

fn drop_next_webhooks(sb: &SandboxHandle, n: u32) {
    sb.faults().add_webhook(WebhookFaultRule {
        side: Some(Side::Fyle),
        action: WebhookFaultAction::Drop,
        skip: 0,
        times: Some(n),
    });
}

/// The health events of `workspace_id` on this stack's topic, once `count` are there.
async fn health_events(
    stack: &TestStack,
    workspace_id: i64,
    count: usize,
) -> Vec<WebhookHealthChanged> {
    let decode = |raw: &crate::kafka_reader::Raw| {
        let envelope = attrsync_kafka::envelope::decode(&raw.payload).ok()?;
        if envelope.workspace_id != workspace_id {
            return None;
        }
        match envelope.payload {
            Some(Payload::WebhookHealthChanged(e)) => Some(e),
            _ => None,
        }
    };
    let raws = read_until(&stack.topic(topics::WEBHOOK_HEALTH), WAIT, |seen| {
        seen.iter().filter_map(decode).count() >= count
    })
    .await
    .unwrap();
    raws.iter().filter_map(decode).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_fyle_registers_the_webhook_subscription_with_ingests_url_once() {
    let sb = demo_sandbox().await;
    // No scheduled rounds: what reaches fyle-sync here comes by webhook.
    let stack = reconcile_stack(
        &sb,
        vec![("FYLE_SYNC__RECONCILE__ENABLED".into(), "false".into())],
    )
    .await;
    let workspace_id = stack.create_workspace_for_org(DEMO_ORG_ID).await.unwrap();
    let before = subscription_count(&sb);
    assert_eq!(
        status(&stack, workspace_id)
            .await
            .webhook_subscription
            .unwrap()
            .status,
        "NOT_REGISTERED"
    );

    let connected = connect(&stack, &sb, workspace_id).await;
    assert_eq!(connected.webhook_subscription, "REGISTERED");
    let url = endpoint_url(&stack, workspace_id).await;
    assert!(
        url.contains("?token="),
        "ingest's URL carries the token: {url}"
    );
    assert_eq!(subscription_count(&sb), before + 1);
    let id = subscription_id(&stack, workspace_id).await;
    let first = subscription(&sb, &id);
    assert_eq!(first["id"].to_string(), id);
    assert_eq!(
        first["webhook_url"],
        url.as_str(),
        "ingest's URL, token included"
    );
    assert_eq!(first["is_enabled"], true);
    let resources = first["subscribed_resources"].as_array().unwrap();
    for r in [
        "CATEGORY",
        "PROJECT",
        "EXPENSE_FIELD",
        "EMPLOYEE",
        "REPORT",
        "ORG_SETTING",
        "DEPENDENT_FIELD",
    ] {
        assert!(resources.iter().any(|x| x == r), "{r} subscribed");
    }
    let shown = status(&stack, workspace_id)
        .await
        .webhook_subscription
        .unwrap();
    assert_eq!(shown.status, "REGISTERED");
    assert!(shown.registered_at.is_some() && shown.last_error.is_empty());

    // It works: Fyle's next change arrives through ingest as a webhook (no pull has run).
    sb.fyle()
        .rename(DEMO_ORG_ID, "categories", TRAVEL, "Journeys")
        .unwrap();
    wait_for_value(&stack, workspace_id, TRAVEL, "Journeys").await;
    assert_eq!(sb.stats().count(Side::Fyle, CATEGORIES), 0, "not pulled");

    // Reconnecting changes nothing in Fyle.
    let posts = sb
        .stats()
        .count(Side::Fyle, "POST /platform/v1/admin/subscriptions");
    assert_eq!(
        connect(&stack, &sb, workspace_id)
            .await
            .webhook_subscription,
        "REGISTERED"
    );
    assert_eq!(
        subscription_count(&sb),
        before + 1,
        "no second subscription"
    );
    assert_eq!(subscription_id(&stack, workspace_id).await, id);
    assert_eq!(subscription(&sb, &id), first, "untouched");
    assert_eq!(
        sb.stats()
            .count(Side::Fyle, "POST /platform/v1/admin/subscriptions"),
        posts,
        "an identical subscription is not written again"
    );

    // After a token rotation, reconnecting moves the same subscription to the new URL.
    stack
        .ingest
        .clone()
        .rotate_webhook_secret(RotateWebhookSecretRequest {
            workspace_id,
            overlap_seconds: 1,
        })
        .await
        .unwrap();
    let rotated = endpoint_url(&stack, workspace_id).await;
    assert_ne!(rotated, url);
    connect(&stack, &sb, workspace_id).await;
    assert_eq!(subscription_count(&sb), before + 1, "updated in place");
    assert_eq!(subscription_id(&stack, workspace_id).await, id);
    assert_eq!(subscription(&sb, &id)["webhook_url"], rotated.as_str());
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_ingest_unreachable_the_connection_is_stored_and_the_subscription_registered_later() {
    let sb = demo_sandbox().await;
    // fyle-sync reaches ingest's gRPC through a proxy that stops answering.
    let grpc = free_port(&[]);
    let proxy = SilentProxy::start(([127, 0, 0, 1], grpc).into())
        .await
        .unwrap();
    proxy.freeze();
    let stack = {
        let http = free_port(&[grpc]);
        TestStack::start_with_env(
            vec![
                ("INGEST__GRPC__LISTEN".into(), format!("127.0.0.1:{grpc}")),
                ("INGEST__HTTP__LISTEN".into(), format!("127.0.0.1:{http}")),
                (
                    "INGEST__WEBHOOKS__PUBLIC_URL".into(),
                    format!("http://127.0.0.1:{http}"),
                ),
            ],
            vec![
                (
                    "FYLE_SYNC__FYLE__ACCOUNTS_URL".into(),
                    sb.fyle_accounts_url().to_owned(),
                ),
                (
                    "FYLE_SYNC__INGEST__ENDPOINT".into(),
                    format!("http://{}", proxy.addr),
                ),
                ("FYLE_SYNC__RECONCILE__TICK".into(), "200ms".into()),
                (
                    "FYLE_SYNC__SUBSCRIPTIONS__RETRY_INTERVAL".into(),
                    "1s".into(),
                ),
            ],
        )
        .await
        .unwrap()
    };
    let workspace_id = stack.create_workspace_for_org(DEMO_ORG_ID).await.unwrap();
    let before = subscription_count(&sb);
    let connected = connect(&stack, &sb, workspace_id).await;
    assert_eq!(connected.org_id, DEMO_ORG_ID, "the connection is made");
    assert_eq!(connected.webhook_subscription, "PENDING");
    let pending = status(&stack, workspace_id).await;
    assert_eq!(pending.fyle_connection, "CONNECTED");
    let waiting = pending.webhook_subscription.unwrap();
    assert_eq!(waiting.status, "PENDING");
    assert!(
        waiting.last_error.contains("ingest"),
        "{}",
        waiting.last_error
    );
    assert!(waiting.next_attempt_at.is_some());
    assert_eq!(subscription_count(&sb), before);

    // Ingest answers again: the scheduler registers the subscription, once.
    proxy.thaw();
    let registered = eventually(WAIT, "the subscription registered", || async {
        let s = status(&stack, workspace_id)
            .await
            .webhook_subscription
            .unwrap();
        Ok((s.status == "REGISTERED").then_some(s))
    })
    .await
    .unwrap();
    assert!(registered.last_error.is_empty());
    assert!(registered.attempts >= 2);
    assert_eq!(subscription_count(&sb), before + 1);
    assert_eq!(
        subscription(&sb, &registered.subscription_id)["webhook_url"],
        endpoint_url(&stack, workspace_id).await.as_str()
    );
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_webhook_is_found_by_the_reconcile_and_missed_webhooks_degrade_then_recover() {
    let sb = demo_sandbox().await;
    let stack = reconcile_stack(&sb, Vec::new()).await;
    let workspace_id = stack.create_workspace_for_org(DEMO_ORG_ID).await.unwrap();
    assert_eq!(
        connect(&stack, &sb, workspace_id)
            .await
            .webhook_subscription,
        "REGISTERED"
    );
    // The first round pulls every resource once, as a baseline that judges nothing.
    let baseline = eventually(WAIT, "the baseline round", || async {
        let s = status(&stack, workspace_id).await;
        Ok((category(&s).last_run == "RECONCILE_FULL").then_some(s))
    })
    .await
    .unwrap();
    let c = category(&baseline);
    assert!(c.webhook_mode);
    assert!(c.last_run_rows >= 2 && c.attributes_active >= 2, "{c:?}");
    assert_eq!(
        (c.missed_webhooks, health(&baseline).as_str()),
        (0, "HEALTHY")
    );

    // One change arrives by webhook, one webhook is dropped.
    sb.fyle()
        .rename(DEMO_ORG_ID, "categories", TRAVEL, "Delivered")
        .unwrap();
    wait_for_value(&stack, workspace_id, TRAVEL, "Delivered").await;
    drop_next_webhooks(&sb, 1);
    sb.fyle()
        .rename(DEMO_ORG_ID, "categories", MEALS, "Dropped")
        .unwrap();
    // The reconcile finds the dropped one, and only that one (the window is recorded when the
    // round ends, after every resource's pass).
    let found = eventually(WAIT, "the dropped webhook found", || async {
        let s = status(&stack, workspace_id).await;
        Ok((s.health.as_ref().is_some_and(|h| h.missed_total > 0)).then_some(s))
    })
    .await
    .unwrap();
    assert_eq!(category(&found).missed_webhooks, 1);
    assert_eq!(category(&found).last_run, "RECONCILE");
    assert_eq!(
        category_value(&stack, workspace_id, MEALS).await.as_deref(),
        Some("Dropped")
    );
    // One missed webhook is within the threshold (more than 1 per window degrades). (The
    // window's own figure is gone a round later; the total stays.)
    let health_now = found.health.clone().unwrap();
    assert_eq!(health_now.state, "HEALTHY");
    assert_eq!(health_now.missed_total, 1);
    // Later windows do not count it again.
    let last_window = health_now.last_window_at;
    eventually(WAIT, "two more windows", || async {
        let s = status(&stack, workspace_id).await;
        let h = s.health.clone().unwrap();
        Ok((h.last_window_at != last_window && h.clean_windows >= 2).then_some(()))
    })
    .await
    .unwrap();
    let s = status(&stack, workspace_id).await;
    assert_eq!(
        (category(&s).missed_webhooks, s.health.unwrap().missed_total),
        (1, 1)
    );

    // Three dropped webhooks in one window: past the threshold. The sandbox's clock stands
    // still while they are made, so a slow machine cannot split them over two rounds.
    drop_next_webhooks(&sb, 3);
    sb.clock().pause();
    for (id, name) in [(TRAVEL, "Lost 1"), (MEALS, "Lost 2"), (TRAVEL, "Lost 3")] {
        sb.fyle()
            .rename(DEMO_ORG_ID, "categories", id, name)
            .unwrap();
    }
    sb.clock().resume();
    let degraded = eventually(WAIT, "DEGRADED", || async {
        let s = status(&stack, workspace_id).await;
        Ok((health(&s) == "DEGRADED").then_some(s))
    })
    .await
    .unwrap();
    let h = degraded.health.clone().unwrap();
    assert_eq!(
        h.missed_total, 3,
        "one missed earlier, two objects changed without a webhook now"
    );
    assert_eq!(
        h.poll_interval_seconds, 1,
        "polling takes over at the shorter interval"
    );
    assert!(h.changed_at.is_some());
    assert_eq!(category(&degraded).webhook_health, "DEGRADED");
    assert_eq!(category(&degraded).missed_webhooks, 3);
    let events = health_events(&stack, workspace_id, 1).await;
    let event = &events[0];
    assert_eq!(
        (event.previous(), event.current()),
        (WebhookHealth::Healthy, WebhookHealth::Degraded)
    );
    assert_eq!(event.source, "fyle");
    assert_eq!(event.missed_in_window, 2);
    assert_eq!(event.missed_by_resource.get("CATEGORY"), Some(&2));
    assert_eq!((event.degrade_above, event.recover_after), (1, 2));
    assert_eq!(event.poll_interval_seconds, 1);
    let metrics = stack
        .http
        .get(format!(
            "http://{}/metrics",
            stack.fyle_sync_running().http_addr
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "fyle_sync_webhook_health_workspaces{state=\"DEGRADED\"}",
        "fyle_sync_missed_webhooks_total{resource=\"CATEGORY\"}",
        "fyle_sync_webhook_health_changes_total{state=\"DEGRADED\"}",
    ] {
        assert!(metrics.contains(series), "{series} not in /metrics");
    }

    // Webhooks work again: two clean windows later it is HEALTHY.
    let healthy = eventually(WAIT, "HEALTHY again", || async {
        let s = status(&stack, workspace_id).await;
        Ok((health(&s) == "HEALTHY").then_some(s))
    })
    .await
    .unwrap();
    let h = healthy.health.unwrap();
    assert!(h.clean_windows >= 2, "{h:?}");
    assert_eq!(h.poll_interval_seconds, 2);
    let events = health_events(&stack, workspace_id, 2).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        (events[1].previous(), events[1].current()),
        (WebhookHealth::Degraded, WebhookHealth::Healthy)
    );
    assert_eq!(events[1].missed_in_window, 0);
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_without_webhooks_keeps_the_24_hour_rule_and_counts_no_missed_webhooks() {
    let sb = demo_sandbox().await;
    let stack = reconcile_stack(&sb, Vec::new()).await;
    let workspace_id = stack
        .mapping
        .clone()
        .create_workspace(CreateWorkspaceRequest {
            name: "Polling".into(),
            fyle_org_id: DEMO_ORG_ID.into(),
            settings: Some(WorkspaceSettings {
                mapping_settings: Vec::new(),
                webhook_flags: Some(WebhookFlags {
                    fyle_webhook_sync_enabled: false,
                    qbo_webhook_sync_enabled: true,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .workspace
        .unwrap()
        .id;
    connect(&stack, &sb, workspace_id).await;
    let pulled = eventually(WAIT, "the first scheduled full pull", || async {
        let s = status(&stack, workspace_id).await;
        Ok((category(&s).last_run == "FULL").then_some(s))
    })
    .await
    .unwrap();
    assert!(!category(&pulled).webhook_mode);
    let listed = sb.stats().count(Side::Fyle, CATEGORIES);
    let first_round = pulled.health.clone().unwrap().next_round_at;

    // A change whose webhook is lost waits for the next full pull (24 hours), unjudged.
    drop_next_webhooks(&sb, 1);
    sb.fyle()
        .rename(DEMO_ORG_ID, "categories", TRAVEL, "Polled")
        .unwrap();
    // Let three rounds pass.
    let deadline = tokio::time::Instant::now() + WAIT;
    let (mut rounds, mut last) = (0, first_round);
    while rounds < 3 {
        assert!(tokio::time::Instant::now() < deadline, "rounds stopped");
        let next = status(&stack, workspace_id)
            .await
            .health
            .unwrap()
            .next_round_at;
        if next != last {
            rounds += 1;
            last = next;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        sb.stats().count(Side::Fyle, CATEGORIES),
        listed,
        "no pull within 24 hours of the last"
    );
    let s = status(&stack, workspace_id).await;
    assert_eq!(category(&s).missed_webhooks, 0);
    let h = s.health.unwrap();
    assert_eq!((h.state.as_str(), h.missed_total), ("HEALTHY", 0));
    assert!(h.last_window_at.is_none(), "no resource was judged");
    assert_ne!(
        category_value(&stack, workspace_id, TRAVEL)
            .await
            .as_deref(),
        Some("Polled")
    );
    stack.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_reconcile_a_workspace_once_per_interval() {
    let sb = demo_sandbox().await;
    let stack = reconcile_stack(&sb, Vec::new()).await;
    let (replica, shutdown) = start_replica(&stack, fast_rounds(&sb)).await;

    let workspace_id = stack.create_workspace_for_org(DEMO_ORG_ID).await.unwrap();
    connect(&stack, &sb, workspace_id).await;
    // Both replicas tick every 200 ms; the round lease and the due time read under it make
    // one round per interval (HEALTHY: 2 s) between them.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut windows: Vec<chrono::DateTime<chrono::Utc>> = Vec::new();
    while windows.len() < 4 {
        assert!(tokio::time::Instant::now() < deadline, "rounds stopped");
        let at = status(&stack, workspace_id)
            .await
            .health
            .unwrap()
            .last_window_at
            .and_then(|t| attrsync_proto::time::from_proto(&t));
        if let Some(at) = at
            && windows.last() != Some(&at)
        {
            windows.push(at);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for pair in windows.windows(2) {
        assert!(
            pair[1] - pair[0] >= chrono::Duration::seconds(2),
            "two rounds within one interval: {windows:?}"
        );
    }
    let calls = sb.stats().count(Side::Fyle, CATEGORIES);
    assert!(
        calls <= 6,
        "one categories pass per round (baseline + 4 windows): {calls}"
    );
    shutdown.cancel();
    replica.stop().await;
    stack.stop().await;
    sb.stop().await;
}
