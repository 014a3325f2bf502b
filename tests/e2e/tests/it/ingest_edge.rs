//! Bad input and outages at the webhook edge: each gets a defined answer and loses nothing.

use std::collections::HashMap;

use attrsync_e2e::TestStack;

use crate::kafka_reader::{read_until, webhook_data_id};
use attrsync_proto::v1::{GetWebhookStatsRequest, UpdateWebhookFlagsRequest};
use serde_json::{Value, json};

fn cost_center(org: &str, id: i64, name: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"action": "UPDATED", "resource": "COST_CENTER",
        "data": {"id": id, "org_id": org, "name": name, "is_enabled": true,
                 "updated_at": "2024-05-02T10:00:00.000000+00:00"}}))
    .unwrap()
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn stats(stack: &TestStack, workspace_id: i64) -> (u64, u64, u64) {
    let s = stack
        .ingest
        .clone()
        .get_webhook_stats(GetWebhookStatsRequest { workspace_id })
        .await
        .unwrap()
        .into_inner();
    (s.accepted, s.duplicates, s.relayed + s.pending_relay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_misaddressed_bodies_get_clear_errors() {
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, org) = stack.create_workspace().await.unwrap();
    let (_, other_org) = stack.create_workspace().await.unwrap();

    let (status, body) = json_of(
        stack
            .post_fyle_webhook(workspace_id, b"{\"action\": ")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("malformed_json"))
    );

    let (status, body) = json_of(
        stack
            .post_fyle_webhook(workspace_id, b"{\"action\": \"CREATED\"}")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["message"].as_str()),
        (400, Some("`data` must be an object"))
    );

    let huge = serde_json::to_vec(&json!({"action": "UPDATED", "resource": "COST_CENTER",
        "data": {"id": 1, "org_id": org, "name": "x".repeat(70_000)}}))
    .unwrap();
    let (status, body) = json_of(stack.post_fyle_webhook(workspace_id, &huge).await.unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("body_too_large"))
    );

    // A workspace that does not exist, or a path that is no workspace, looks exactly like a
    // wrong token: a stranger cannot probe which workspaces exist.
    let valid = stack.webhook_url(workspace_id).await.unwrap();
    let token = valid.split_once("?token=").unwrap().1;
    let mut answers = Vec::new();
    for url in [
        format!(
            "{}/workspaces/987654321/fyle/exports/?token={token}",
            stack.ingest_url
        ),
        format!(
            "{}/workspaces/not-a-number/fyle/exports/?token={token}",
            stack.ingest_url
        ),
        format!(
            "{}/workspaces/{workspace_id}/fyle/exports/?token=wrong",
            stack.ingest_url
        ),
        format!(
            "{}/workspaces/{workspace_id}/fyle/exports/",
            stack.ingest_url
        ),
    ] {
        answers.push(
            json_of(
                stack
                    .post_to(&url, &cost_center(&org, 1, "A"))
                    .await
                    .unwrap(),
            )
            .await,
        );
    }
    for answer in &answers {
        assert_eq!(
            answer,
            &(
                401,
                json!({"error": "unauthorized", "message": "missing or invalid webhook credentials"})
            )
        );
    }

    let (status, body) = json_of(
        stack
            .post_fyle_webhook(workspace_id, &cost_center(&other_org, 1, "A"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        body,
        json!({"error": "org_mismatch", "message": "data.org_id is not this workspace's org"}),
        "authenticated, so the sender may learn the org is wrong — but not whose it is"
    );
    assert_eq!(status, 400);

    assert_eq!(
        stats(&stack, workspace_id).await,
        (0, 0, 0),
        "nothing refused was stored or relayed"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_delivery_is_acknowledged_and_relayed_once() {
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, org) = stack.create_workspace().await.unwrap();
    let body = cost_center(&org, 9587, "01: San Francisco");
    let (status, first) =
        json_of(stack.post_fyle_webhook(workspace_id, &body).await.unwrap()).await;
    assert_eq!((status, first["status"].as_str()), (200, Some("accepted")));
    let (status, again) =
        json_of(stack.post_fyle_webhook(workspace_id, &body).await.unwrap()).await;
    assert_eq!((status, again["status"].as_str()), (200, Some("duplicate")));
    assert_eq!(again["delivery_id"], first["delivery_id"]);
    assert_eq!(stats(&stack, workspace_id).await, (1, 1, 1));
    // Operators see it on /metrics (process-wide counters: other tests add to them too).
    let metrics = stack
        .http
        .get(format!(
            "http://{}/metrics",
            stack.ingest_running().http_addr
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "ingest_webhooks_total{source=\"fyle\",outcome=\"accepted\"}",
        "ingest_webhooks_total{source=\"fyle\",outcome=\"duplicate\"}",
        "ingest_accept_seconds_bucket{source=\"fyle\",le=\"0.05\"}",
        "outbox_relay_lag_seconds_bucket",
    ] {
        assert!(metrics.contains(series), "{series} missing from /metrics");
    }
    stack.stop().await;
}

/// Copies of a delivery arriving at the same moment share a group commit (or race across two):
/// each body is stored and relayed once, every copy is answered with the first's delivery id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copies_of_a_delivery_are_stored_and_relayed_once() {
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, org) = stack.create_workspace().await.unwrap();
    let ids = [7101_i64, 7102, 7103];
    let copies: Vec<(i64, Vec<u8>)> = ids
        .iter()
        .flat_map(|&id| {
            let body = cost_center(&org, id, &format!("Concurrent {id}"));
            std::iter::repeat_n((id, body), 10)
        })
        .collect();
    let stack_ref = &stack;
    let posts = copies.iter().map(|(id, body)| async move {
        let response = stack_ref
            .post_fyle_webhook(workspace_id, body)
            .await
            .unwrap();
        (*id, json_of(response).await)
    });
    let answers = futures::future::join_all(posts).await;
    let mut delivery_ids: HashMap<i64, Vec<String>> = HashMap::new();
    let mut accepted = 0;
    for (id, (status, answer)) in &answers {
        assert_eq!(*status, 200, "{answer}");
        match answer["status"].as_str() {
            Some("accepted") => accepted += 1,
            Some("duplicate") => {}
            other => panic!("unexpected answer {other:?}: {answer}"),
        }
        delivery_ids
            .entry(*id)
            .or_default()
            .push(answer["delivery_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(accepted, ids.len(), "one copy of each body is the new one");
    for (id, answered) in &delivery_ids {
        assert!(
            answered.iter().all(|d| d == &answered[0]),
            "every copy of {id} names the first delivery: {answered:?}"
        );
    }
    assert_eq!(stats(&stack, workspace_id).await, (3, 27, 3));
    // Published after every copy was answered, so once it is read, any extra copy would be too.
    let barrier = cost_center(&org, 7199, "Barrier");
    assert_eq!(
        stack
            .post_fyle_webhook(workspace_id, &barrier)
            .await
            .unwrap()
            .status(),
        200
    );
    let topic = stack.topic(attrsync_kafka::topics::FYLE_ATTRIBUTE_WEBHOOKS);
    let published = read_until(&topic, std::time::Duration::from_secs(60), |seen| {
        seen.iter().any(|m| webhook_data_id(m) == Some(7199))
    })
    .await
    .unwrap();
    for id in ids {
        assert_eq!(
            published
                .iter()
                .filter(|m| webhook_data_id(m) == Some(id))
                .count(),
            1,
            "{id} is on the topic once"
        );
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribute_webhooks_are_recorded_but_not_relayed_when_webhook_sync_is_off_for_the_type() {
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, org) = stack.create_workspace().await.unwrap();
    stack
        .mapping
        .clone()
        .update_webhook_flags(UpdateWebhookFlagsRequest {
            workspace_id,
            set_fyle_by_attribute_type: HashMap::from([("COST_CENTER".to_owned(), false)]),
            ..Default::default()
        })
        .await
        .unwrap();
    // The flag reaches ingest through settings.workspaces.v1; wait until a webhook is skipped.
    let mut n = 0;
    let skipped = attrsync_e2e::eventually(
        std::time::Duration::from_secs(60),
        "ingest to see the flag",
        || {
            n += 1;
            let body = cost_center(&org, n, &format!("CC {n}"));
            let stack = &stack;
            async move {
                let (status, _) =
                    json_of(stack.post_fyle_webhook(workspace_id, &body).await?).await;
                assert_eq!(status, 200);
                let (accepted, _, relayed) = stats(stack, workspace_id).await;
                Ok((accepted > relayed).then_some((accepted, relayed)))
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(
        skipped.0,
        skipped.1 + 1,
        "exactly the webhook after the flag change was skipped"
    );
    // The skipped body never reaches a topic: a CATEGORY webhook (sync on) posted after it is
    // the barrier; everything the topic holds before it is the cost centers relayed earlier.
    let skipped_id = n;
    let barrier = serde_json::to_vec(&json!({"action": "CREATED", "resource": "CATEGORY",
        "data": {"id": 777_777, "org_id": org, "name": "Barrier", "is_enabled": true,
                 "updated_at": "2024-05-02T10:00:00+00:00"}}))
    .unwrap();
    let (status, _) = json_of(
        stack
            .post_fyle_webhook(workspace_id, &barrier)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let topic = stack.topic(attrsync_kafka::topics::FYLE_ATTRIBUTE_WEBHOOKS);
    let messages = read_until(&topic, std::time::Duration::from_secs(60), |seen| {
        seen.iter().any(|m| webhook_data_id(m) == Some(777_777))
    })
    .await
    .unwrap();
    let relayed: Vec<i64> = messages.iter().filter_map(webhook_data_id).collect();
    assert!(relayed.contains(&777_777), "{relayed:?}");
    assert!(
        !relayed.contains(&skipped_id),
        "the skipped webhook was relayed: {relayed:?}"
    );
    assert_eq!(relayed.len(), usize::try_from(skipped.1).unwrap() + 1);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_answers_429_with_retry_after() {
    let stack = TestStack::start_with_ingest_env(vec![
        (
            "INGEST__RATE_LIMIT__PER_WORKSPACE_PER_SECOND".into(),
            "1".into(),
        ),
        ("INGEST__RATE_LIMIT__BURST".into(), "2".into()),
    ])
    .await
    .unwrap();
    let (workspace_id, org) = stack.create_workspace().await.unwrap();
    // Ten at once: with a burst of 2 and 1 per second, at most the burst and one more per
    // second the burst took are accepted.
    let url = stack.webhook_url(workspace_id).await.unwrap();
    let started = std::time::Instant::now();
    let requests = (0..10).map(|n| {
        let body = cost_center(&org, n, "CC");
        let (stack, url) = (&stack, &url);
        async move { stack.post_to(url, &body).await.unwrap() }
    });
    let responses = futures::future::join_all(requests).await;
    let took = started.elapsed().as_secs() as usize;
    let accepted = responses.iter().filter(|r| r.status() == 200).count();
    let limited: Vec<_> = responses.iter().filter(|r| r.status() == 429).collect();
    assert!(
        (2..=3 + took).contains(&accepted),
        "{accepted} accepted in {took} s"
    );
    assert_eq!(accepted + limited.len(), 10, "every answer is 200 or 429");
    assert!(
        limited
            .iter()
            .all(|r| r.headers().contains_key("retry-after"))
    );
    let (stored, _, _) = stats(&stack, workspace_id).await;
    assert_eq!(stored as usize, accepted, "refused webhooks are not stored");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_gone_ingest_answers_503_and_stores_nothing() {
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, org) = stack.create_workspace().await.unwrap();
    assert_eq!(
        stack
            .post_fyle_webhook(workspace_id, &cost_center(&org, 1, "A"))
            .await
            .unwrap()
            .status(),
        200
    );

    let mut admin = attrsync_db::diesel_async::AsyncPgConnection::establish(
        &attrsync_e2e::admin_database_url(),
    )
    .await
    .unwrap();
    use attrsync_db::diesel_async::{AsyncConnection as _, RunQueryDsl as _};
    let url = stack.webhook_url(workspace_id).await.unwrap();
    diesel_drop(&mut admin, stack.database.name()).await;

    let response = stack
        .post_to(&url, &cost_center(&org, 2, "B"))
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unavailable");
    stack.stop().await;

    async fn diesel_drop(conn: &mut attrsync_db::diesel_async::AsyncPgConnection, name: &str) {
        diesel::sql_query(format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
            .execute(conn)
            .await
            .unwrap();
    }
}
