//! What an operator relies on: answers within deadlines when the database goes silent,
//! readiness that tells the truth, and tables that do not grow forever.

use std::time::{Duration, Instant};

use attrsync_e2e::{TestStack, eventually, proxy::SilentProxy};
use attrsync_kafka::topics;
use attrsync_proto::v1::FyleAttributeWebhook;
use diesel::{QueryableByName, sql_types::BigInt};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

fn category(org: &str, id: i64) -> Vec<u8> {
    serde_json::to_vec(&json!({"action": "CREATED", "resource": "CATEGORY",
        "data": {"id": id, "org_id": org, "name": "Travel", "sub_category": format!("S{id}"),
                 "is_enabled": true, "updated_at": "2024-05-02T10:00:00+00:00"}}))
    .unwrap()
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(url: &str, sql: &str) -> i64 {
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    diesel::sql_query(sql)
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .n
}

async fn readyz(stack: &TestStack, addr: std::net::SocketAddr) -> (u16, Value) {
    let response = stack
        .http
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_database_answers_503_within_the_timeout_and_readiness_says_so() {
    // ingest reaches PostgreSQL through a proxy that can stop moving bytes.
    let postgres: std::net::SocketAddr = {
        let url = url::Url::parse(&attrsync_e2e::admin_database_url()).unwrap();
        format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432))
            .parse()
            .unwrap()
    };
    let proxy = SilentProxy::start(postgres).await.unwrap();
    let stack = TestStack::start_with_ingest_database_via(
        proxy.addr,
        vec![
            ("INGEST__DATABASE__QUERY_TIMEOUT".into(), "1s".into()),
            ("INGEST__DATABASE__CHECKOUT_TIMEOUT".into(), "1s".into()),
            ("INGEST__DATABASE__CONNECT_TIMEOUT".into(), "1s".into()),
        ],
    )
    .await
    .unwrap();
    let (workspace_id, org) = stack.create_workspace().await.unwrap();
    let accepted = stack
        .post_fyle_webhook(workspace_id, &category(&org, 1))
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);

    let url = stack.webhook_url(workspace_id).await.unwrap();
    proxy.freeze();
    let started = Instant::now();
    let refused = stack.post_to(&url, &category(&org, 2)).await.unwrap();
    let took = started.elapsed();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": "unavailable", "message": "temporarily unavailable; retry later"}),
        "no database text in the answer"
    );
    let (status, report) = readyz(&stack, stack.ingest_running().http_addr).await;
    assert_eq!(status, 503, "{report}");
    assert_eq!(report["checks"]["database"], "does not answer");

    proxy.thaw();
    eventually(WAIT, "ingest to accept again", || async {
        let response = stack.post_to(&url, &category(&org, 3)).await?;
        Ok((response.status() == 200).then_some(()))
    })
    .await
    .unwrap();
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_waiting_on_an_unreachable_mapping_turns_the_service_not_ready() {
    // fyle-sync cannot reach mapping, and a message names a workspace it does not know: the
    // message must wait (not be dropped), and readiness must say the consumer is stuck.
    let stack = TestStack::start_with_env(
        vec![],
        vec![
            (
                "FYLE_SYNC__MAPPING__ENDPOINT".into(),
                "http://127.0.0.1:1".into(),
            ),
            (
                "FYLE_SYNC__HEALTH__CONSUMER_STALLED_AFTER".into(),
                "1s".into(),
            ),
        ],
    )
    .await
    .unwrap();
    let fyle_sync = stack.fyle_sync_running().http_addr;
    assert_eq!(readyz(&stack, fyle_sync).await.0, 200);
    stack
        .publish_directly(
            topics::FYLE_ATTRIBUTE_WEBHOOKS,
            424_242,
            FyleAttributeWebhook {
                action: "CREATED".into(),
                resource: "CATEGORY".into(),
                data_json: json!({"id": 1, "org_id": "orX", "name": "Travel"}).to_string(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let report = eventually(WAIT, "fyle-sync to report the stuck consumer", || async {
        let (status, report) = readyz(&stack, fyle_sync).await;
        Ok((status == 503).then_some(report))
    })
    .await
    .unwrap();
    let check = report["checks"]["consumer fyle.attribute-webhooks.v1"]
        .as_str()
        .unwrap();
    assert!(check.starts_with("no progress for"), "{report}");
    let progress = stack
        .fyle_sync_running()
        .consumer(topics::FYLE_ATTRIBUTE_WEBHOOKS)
        .unwrap();
    assert_eq!(progress.dead_lettered(), 0, "waiting, not dropped");
    assert_eq!(progress.held_partitions(), 1);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processed_events_and_old_inbox_rows_are_pruned_and_recent_ones_kept() {
    let stack = TestStack::start_with_env(
        vec![("INGEST__RETENTION__INTERVAL".into(), "200ms".into())],
        vec![
            ("FYLE_SYNC__RETENTION__INTERVAL".into(), "200ms".into()),
            // Long enough for a busy machine to see the row before it is pruned.
            ("FYLE_SYNC__RETENTION__PROCESSED_EVENTS".into(), "8s".into()),
        ],
    )
    .await
    .unwrap();
    let (workspace_id, org) = stack.create_workspace().await.unwrap();
    let url = &stack.database.url;
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    diesel::sql_query(format!(
        "INSERT INTO ingest.inbox (delivery_id, dedupe_key, source, workspace_id, action, \
         disposition, body, received_at) VALUES ('old', 'old-key', 'fyle', {workspace_id}, \
         'UPDATED', 'PUBLISHED', '{{}}', now() - interval '8 days')"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        stack
            .post_fyle_webhook(workspace_id, &category(&org, 1))
            .await
            .unwrap()
            .status(),
        200
    );
    eventually(WAIT, "fyle-sync to apply the webhook", || async {
        Ok(
            (count(url, "SELECT count(*) AS n FROM fyle_sync.processed_events").await == 1)
                .then_some(()),
        )
    })
    .await
    .unwrap();
    eventually(WAIT, "the inbox row past keep_for to go", || async {
        Ok((count(
            url,
            "SELECT count(*) AS n FROM ingest.inbox WHERE delivery_id = 'old'",
        )
        .await
            == 0)
            .then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(
        count(url, "SELECT count(*) AS n FROM ingest.inbox").await,
        1,
        "the recent delivery is kept"
    );
    eventually(
        WAIT,
        "processed_events past their retention to go",
        || async {
            Ok(
                (count(url, "SELECT count(*) AS n FROM fyle_sync.processed_events").await == 0)
                    .then_some(()),
            )
        },
    )
    .await
    .unwrap();
    stack.stop().await;
}
