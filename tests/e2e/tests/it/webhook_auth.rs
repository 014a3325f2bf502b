//! Who may post a workspace's webhooks, end to end: tokens, signatures, rotation, and what a
//! forged delivery achieves (nothing).

use std::time::Duration;

use attrsync_e2e::{TestStack, eventually};
use attrsync_kafka::topics;
use attrsync_proto::v1::{
    GetFyleSyncStatusRequest, ListExpenseAttributesRequest, RotateWebhookSecretRequest,
    SetAuthModeRequest, WebhookAuthMode,
};
use attrsync_sandbox::signing;
use serde_json::json;

use crate::kafka_reader::{read_until, webhook_data_id};

const WAIT: Duration = Duration::from_secs(60);

fn category(org: &str, id: i64, sub: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"action": "CREATED", "resource": "CATEGORY",
        "data": {"id": id, "org_id": org, "name": "Travel", "sub_category": sub,
                 "is_enabled": true, "updated_at": "2024-05-02T10:00:00+00:00"}}))
    .unwrap()
}

fn plain_url(stack: &TestStack, workspace_id: i64) -> String {
    format!(
        "{}/workspaces/{workspace_id}/fyle/exports/",
        stack.ingest_url
    )
}

async fn post_signed(stack: &TestStack, url: &str, secret: &str, body: &[u8]) -> u16 {
    stack
        .http
        .post(url)
        .header("content-type", "application/json")
        .header("x-fyle-signature", signing::fyle_signature(secret, body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn post_standard(stack: &TestStack, url: &str, secret: &str, body: &[u8], ts: i64) -> u16 {
    stack
        .http
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", "msg_2f1")
        .header("webhook-timestamp", ts.to_string())
        .header(
            "webhook-signature",
            signing::standard_webhooks_signature(secret, "msg_2f1", ts, body),
        )
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The rotation tests' overlap: long enough for a busy machine to make every "during the
/// overlap" call inside it.
const OVERLAP_SECONDS: u32 = 6;
/// After the rotation: a second before the overlap ends, when a delivery with the new secret
/// loads the credentials (both secrets) into ingest's 2 s cache…
const LAST_SECOND_OF_OVERLAP: Duration = Duration::from_secs(5);
/// …and then just past the overlap, inside that cache's TTL: the old secret must be refused
/// all the same.
const JUST_AFTER_OVERLAP: Duration = Duration::from_millis(1_500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_webhook_without_the_token_changes_nothing_downstream() {
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, org) = stack.create_workspace().await.unwrap();
    // An attacker knows the workspace id and the org id, not the token.
    let forged = stack
        .post_to(
            &plain_url(&stack, workspace_id),
            &category(&org, 1, "Forged"),
        )
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    // The real sender's delivery behind it is the barrier.
    let real = stack
        .post_fyle_webhook(workspace_id, &category(&org, 2, "Real"))
        .await
        .unwrap();
    assert_eq!(real.status(), 200);
    let relayed = read_until(
        &stack.topic(topics::FYLE_ATTRIBUTE_WEBHOOKS),
        WAIT,
        |seen| seen.iter().any(|m| webhook_data_id(m) == Some(2)),
    )
    .await
    .unwrap();
    assert_eq!(
        relayed
            .iter()
            .filter_map(webhook_data_id)
            .collect::<Vec<_>>(),
        vec![2],
        "the forged delivery never reached Kafka"
    );
    eventually(WAIT, "the real category", || async {
        let status = stack
            .fyle_sync
            .clone()
            .get_sync_status(GetFyleSyncStatusRequest { workspace_id })
            .await?
            .into_inner();
        Ok((status.webhook_events_applied == 1).then_some(()))
    })
    .await
    .unwrap();
    let values: Vec<String> = stack
        .fyle_sync
        .clone()
        .list_expense_attributes(ListExpenseAttributesRequest {
            workspace_id,
            attribute_type: Some("CATEGORY".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .attributes
        .into_iter()
        .map(|a| a.value)
        .collect();
    assert_eq!(values, vec!["Travel / Real"]);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_url_token_stays_valid_for_the_overlap_and_not_after() {
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, org) = stack.create_workspace().await.unwrap();
    let old = stack.webhook_url(workspace_id).await.unwrap();
    stack
        .ingest
        .clone()
        .rotate_webhook_secret(RotateWebhookSecretRequest {
            workspace_id,
            overlap_seconds: OVERLAP_SECONDS,
        })
        .await
        .unwrap();
    let new = stack.webhook_url(workspace_id).await.unwrap();
    assert_ne!(old, new);
    let status = |url: String, id| {
        let stack = &stack;
        let org = org.clone();
        async move {
            stack
                .post_to(&url, &category(&org, id, "x"))
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        status(old.clone(), 1).await,
        200,
        "old token during the overlap"
    );
    assert_eq!(status(new.clone(), 2).await, 200);
    tokio::time::sleep(LAST_SECOND_OF_OVERLAP).await;
    assert_eq!(status(new.clone(), 3).await, 200);
    tokio::time::sleep(JUST_AFTER_OVERLAP).await;
    assert_eq!(
        status(old, 4).await,
        401,
        "old token after the overlap, its credentials still cached"
    );
    assert_eq!(status(new, 5).await, 200);
    stack.stop().await;
}

/// ingest's `limits.auth_cache_ttl` in the test stack (its default).
const AUTH_CACHE_TTL: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mode_set_through_another_replica_reaches_a_busy_workspace_within_the_cache_ttl() {
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, org) = stack.create_workspace().await.unwrap();
    let tokened = stack.webhook_url(workspace_id).await.unwrap();
    let post = |id: i64| {
        let (stack, url, org) = (&stack, tokened.clone(), org.clone());
        async move {
            let status = stack.post_to(&url, &category(&org, id, "x")).await.unwrap();
            status.status().as_u16()
        }
    };
    assert_eq!(
        post(1).await,
        200,
        "the stack's ingest now caches url_token"
    );

    // Another replica — same database, memory of its own — switches the workspace to HMAC.
    let config = <ingest::Config as attrsync_config::ServiceConfig>::from_env_pairs(
        attrsync_e2e::service_env("ingest", &stack.database.url, &stack.topic_prefix, None),
    )
    .unwrap();
    let pool = attrsync_db::connect(&config.database).await.unwrap();
    let changed = ingest::credentials::set_mode(
        &pool,
        &config.secrets.keyring().unwrap(),
        workspace_id,
        ingest::auth::AuthMode::Hmac,
    )
    .await
    .unwrap();
    let changed_at = std::time::Instant::now();

    // The workspace stays busy, so its entry is kept loaded by the background refresh; no
    // delivery sent a TTL after the change may still be let in by the old mode's token.
    let mut id = 2;
    loop {
        let sent = changed_at.elapsed();
        match post(id).await {
            401 => break,
            200 => assert!(
                sent < AUTH_CACHE_TTL,
                "the token of the mode replaced {sent:?} ago was accepted"
            ),
            other => panic!("unexpected {other}"),
        }
        id += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let secret = changed.new_hmac_secret.unwrap();
    assert_eq!(
        post_signed(
            &stack,
            &plain_url(&stack, workspace_id),
            &secret,
            &category(&org, id, "y")
        )
        .await,
        200,
        "the new mode's secret is accepted"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_secrets_rotate_with_an_overlap_and_standard_webhooks_replays_are_refused() {
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, org) = stack.create_workspace().await.unwrap();
    let mut ingest = stack.ingest.clone();
    let first = ingest
        .set_auth_mode(SetAuthModeRequest {
            workspace_id,
            mode: WebhookAuthMode::Hmac as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        first.secret.starts_with("whsec_"),
        "a secret is handed out once"
    );
    let url = stack.webhook_url(workspace_id).await.unwrap();
    assert!(!url.contains("token"));

    let body = category(&org, 1, "Signed");
    assert_eq!(post_signed(&stack, &url, &first.secret, &body).await, 200);
    assert_eq!(
        post_signed(&stack, &url, "whsec_bm90IHRoZSBzZWNyZXQ=", &body).await,
        401
    );
    assert_eq!(
        stack.post_to(&url, &body).await.unwrap().status(),
        401,
        "unsigned"
    );
    let now = chrono::Utc::now().timestamp();
    let body2 = category(&org, 2, "Standard");
    assert_eq!(
        post_standard(&stack, &url, &first.secret, &body2, now).await,
        200
    );
    assert_eq!(
        post_standard(
            &stack,
            &url,
            &first.secret,
            &category(&org, 3, "Old"),
            now - 600
        )
        .await,
        401,
        "a signature older than the tolerance is a replay"
    );

    let second = ingest
        .rotate_webhook_secret(RotateWebhookSecretRequest {
            workspace_id,
            overlap_seconds: OVERLAP_SECONDS,
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(second.secret, first.secret);
    assert!(second.previous_valid_until.is_some());
    let b4 = category(&org, 4, "Overlap");
    assert_eq!(post_signed(&stack, &url, &first.secret, &b4).await, 200);
    assert_eq!(
        post_signed(&stack, &url, &second.secret, &category(&org, 5, "New")).await,
        200
    );
    tokio::time::sleep(LAST_SECOND_OF_OVERLAP).await;
    assert_eq!(
        post_signed(&stack, &url, &second.secret, &category(&org, 8, "Warm")).await,
        200
    );
    tokio::time::sleep(JUST_AFTER_OVERLAP).await;
    assert_eq!(
        post_signed(&stack, &url, &first.secret, &category(&org, 6, "Late")).await,
        401,
        "old secret after the overlap, its credentials still cached"
    );
    assert_eq!(
        post_signed(&stack, &url, &second.secret, &category(&org, 7, "Ok")).await,
        200
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_stored_sealed_never_in_plain_text() {
    use diesel::{QueryableByName, sql_types::Bytea};
    use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, _) = stack.create_workspace().await.unwrap();
    let url = stack.webhook_url(workspace_id).await.unwrap();
    let token = url.split_once("?token=").unwrap().1.to_owned();
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Bytea)]
        ciphertext: Vec<u8>,
    }
    let mut conn = AsyncPgConnection::establish(&stack.database.url)
        .await
        .unwrap();
    let rows: Vec<Row> = diesel::sql_query(format!(
        "SELECT ciphertext FROM ingest.webhook_secrets WHERE workspace_id = {workspace_id}"
    ))
    .load(&mut conn)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    let stored = &rows[0].ciphertext;
    assert!(
        !stored.windows(token.len()).any(|w| w == token.as_bytes()),
        "the token must not be stored in the clear"
    );
    stack.stop().await;
}
