//! The walking skeleton: a Fyle webhook enters ingest, crosses Kafka and lands in fyle-sync.

use attrsync_config::ServiceConfig as _;
use std::time::Duration;

use attrsync_e2e::{TestStack, eventually};
use attrsync_kafka::{Producer, envelope, topics};
use attrsync_proto::{
    Payload,
    v1::{
        ExpenseAttribute, GetFyleSyncStatusRequest, ListExpenseAttributesRequest,
        SetAuthModeRequest, WebhookAuthMode,
    },
};
use serde_json::{Value, json};

use crate::kafka_reader::{read_until, webhook_data_id};

const WAIT: Duration = Duration::from_secs(60);

fn category(org: &str, id: i64, name: &str, sub: &str, updated_at: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": "CREATED", "resource": "CATEGORY",
        "data": {"id": id, "org_id": org, "name": name, "sub_category": sub,
                 "display_name": format!("{name} / {sub}"), "code": null, "is_enabled": true,
                 "system_category": null, "restricted_project_ids": null, "restricted_spender_user_ids": null,
                 "created_at": "2024-05-02T10:00:00.000000+00:00", "updated_at": updated_at}
    }))
    .unwrap()
}

async fn categories(stack: &TestStack, workspace_id: i64) -> anyhow::Result<Vec<ExpenseAttribute>> {
    let response = stack
        .fyle_sync
        .clone()
        .list_expense_attributes(ListExpenseAttributesRequest {
            workspace_id,
            attribute_type: Some("CATEGORY".into()),
            ..Default::default()
        })
        .await?;
    Ok(response.into_inner().attributes)
}

async fn applied_count(stack: &TestStack, workspace_id: i64) -> anyhow::Result<u64> {
    let status = stack
        .fyle_sync
        .clone()
        .get_sync_status(GetFyleSyncStatusRequest { workspace_id })
        .await?;
    Ok(status.into_inner().webhook_events_applied)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_category_webhook_travels_from_ingest_through_kafka_into_fyle_sync() {
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, org) = stack.create_workspace().await.unwrap();

    let response = stack
        .post_fyle_webhook(
            workspace_id,
            &category(
                &org,
                22330099,
                "Travel",
                "Flight",
                "2024-05-02T10:00:00.000000+00:00",
            ),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "accepted");

    let stored = eventually(WAIT, "the category in fyle-sync", || async {
        Ok(categories(&stack, workspace_id).await?.into_iter().next())
    })
    .await
    .unwrap();
    assert_eq!(stored.value, "Travel / Flight");
    assert_eq!(stored.source_id, "22330099");
    assert_eq!(stored.display_name, "Category");
    assert!(stored.active);
    assert_eq!(applied_count(&stack, workspace_id).await.unwrap(), 1);
    // Consumers catching up ask for what changed since a time.
    let since = |at: chrono::DateTime<chrono::Utc>| {
        let fyle_sync = stack.fyle_sync.clone();
        async move {
            fyle_sync
                .clone()
                .list_expense_attributes(ListExpenseAttributesRequest {
                    workspace_id,
                    updated_since: Some(attrsync_proto::time::to_proto(at)),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .attributes
                .len()
        }
    };
    let now = chrono::Utc::now();
    assert_eq!(since(now - chrono::Duration::minutes(5)).await, 1);
    assert_eq!(since(now + chrono::Duration::minutes(5)).await, 0);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_kafka_message_is_applied_once() {
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, org) = stack.create_workspace().await.unwrap();
    let first = category(
        &org,
        501,
        "Travel",
        "Flight",
        "2024-05-02T10:00:00.000000+00:00",
    );
    assert_eq!(
        stack
            .post_fyle_webhook(workspace_id, &first)
            .await
            .unwrap()
            .status(),
        200
    );
    eventually(WAIT, "the first category", || async {
        Ok((applied_count(&stack, workspace_id).await? == 1).then_some(()))
    })
    .await
    .unwrap();

    // Redeliver the very message ingest published, byte for byte (same event id). A barrier
    // webhook posted after it bounds the read, so a second copy would be seen.
    let barrier = category(
        &org,
        503,
        "Barrier",
        "Only",
        "2024-05-02T10:00:00.000000+00:00",
    );
    assert_eq!(
        stack
            .post_fyle_webhook(workspace_id, &barrier)
            .await
            .unwrap()
            .status(),
        200
    );
    let topic = stack.topic(topics::FYLE_ATTRIBUTE_WEBHOOKS);
    let mut published = read_until(&topic, WAIT, |seen| {
        seen.iter().any(|m| webhook_data_id(m) == Some(503))
    })
    .await
    .unwrap();
    published.retain(|m| webhook_data_id(m) != Some(503));
    assert_eq!(published.len(), 1, "ingest published exactly one message");
    let original = envelope::decode(&published[0].payload).unwrap();
    assert!(matches!(
        original.payload,
        Some(Payload::FyleAttributeWebhook(_))
    ));
    let producer = Producer::new(
        &mapping::Config::from_env_pairs(vec![(
            "KAFKA_BOOTSTRAP".into(),
            attrsync_e2e::kafka_bootstrap(),
        )])
        .unwrap()
        .kafka,
    )
    .unwrap();
    let key = published[0]
        .key
        .as_deref()
        .map(|k| String::from_utf8_lossy(k).into_owned());
    producer
        .send_raw(&topic, key.as_deref(), &published[0].payload, &[])
        .await
        .unwrap();

    // A second, different webhook behind the redelivery on the same partition: once it is
    // applied, the redelivery before it has been handled too.
    let second = category(
        &org,
        502,
        "Meals",
        "Lunch",
        "2024-05-02T11:00:00.000000+00:00",
    );
    assert_eq!(
        stack
            .post_fyle_webhook(workspace_id, &second)
            .await
            .unwrap()
            .status(),
        200
    );
    let rows = eventually(WAIT, "the second category", || async {
        let rows = categories(&stack, workspace_id).await?;
        Ok(rows.iter().any(|r| r.source_id == "502").then_some(rows))
    })
    .await
    .unwrap();

    assert_eq!(
        read_until(&topic, WAIT, |seen| seen.len() >= 4)
            .await
            .unwrap()
            .len(),
        4,
        "first, barrier, the redelivery and the second are on the topic"
    );
    assert_eq!(
        applied_count(&stack, workspace_id).await.unwrap(),
        3,
        "the redelivered event was not applied again"
    );
    assert_eq!(rows.iter().filter(|r| r.source_id == "501").count(), 1);
    assert_eq!(rows.len(), 3);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_org_check_only_mode_an_org_without_a_workspace_is_refused_as_in_production() {
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, org) = stack.create_workspace().await.unwrap();
    // A workspace migrated with a tokenless URL keeps production's check, and its messages.
    stack
        .ingest
        .clone()
        .set_auth_mode(SetAuthModeRequest {
            workspace_id,
            mode: WebhookAuthMode::OrgCheckOnly as i32,
        })
        .await
        .unwrap();
    assert!(
        !stack
            .webhook_url(workspace_id)
            .await
            .unwrap()
            .contains("token")
    );

    let stranger = category(
        "orNobodyAtAll",
        9,
        "Travel",
        "Flight",
        "2024-05-02T10:00:00.000000+00:00",
    );
    let response = stack
        .post_fyle_webhook(workspace_id, &stranger)
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": "org_not_found", "message": "Workspace not found"})
    );

    // A valid webhook afterwards is the only message on the topic.
    let valid = category(
        &org,
        10,
        "Travel",
        "Train",
        "2024-05-02T10:00:00.000000+00:00",
    );
    assert_eq!(
        stack
            .post_fyle_webhook(workspace_id, &valid)
            .await
            .unwrap()
            .status(),
        200
    );
    let topic = stack.topic(topics::FYLE_ATTRIBUTE_WEBHOOKS);
    // The refused body was posted first: had it been published, it would precede the valid
    // one on the workspace's partition, so reading up to the valid one is enough.
    let messages = read_until(&topic, WAIT, |seen| {
        seen.iter().any(|m| webhook_data_id(m) == Some(10))
    })
    .await
    .unwrap();
    assert_eq!(messages.len(), 1, "only the valid webhook was published");
    let Some(Payload::FyleAttributeWebhook(hook)) =
        envelope::decode(&messages[0].payload).unwrap().payload
    else {
        panic!("not an attribute webhook");
    };
    let data: Value = serde_json::from_str(&hook.data_json).unwrap();
    assert_eq!(data["org_id"], org.as_str());
    stack.stop().await;
}

fn event(action: &str, org: &str, id: i64, name: &str, sub: &str, updated_at: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": action, "resource": "CATEGORY",
        "data": {"id": id, "org_id": org, "name": name, "sub_category": sub, "is_enabled": true,
                 "updated_at": updated_at}
    }))
    .unwrap()
}

async fn ignored_count(stack: &TestStack, workspace_id: i64) -> anyhow::Result<u64> {
    let status = stack
        .fyle_sync
        .clone()
        .get_sync_status(GetFyleSyncStatusRequest { workspace_id })
        .await?;
    Ok(status.into_inner().webhook_events_ignored)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_updates_the_row_and_a_delayed_older_webhook_cannot_undo_it() {
    let stack = TestStack::start().await.unwrap();
    let (workspace_id, org) = stack.create_workspace().await.unwrap();
    for body in [
        event(
            "CREATED",
            &org,
            7,
            "Travel",
            "Flight",
            "2024-05-02T10:00:00+00:00",
        ),
        event(
            "UPDATED",
            &org,
            7,
            "Travel",
            "Train",
            "2024-05-02T11:00:00+00:00",
        ),
        // Same content again, later: nothing visible changes, but the version advances …
        event(
            "UPDATED",
            &org,
            7,
            "Travel",
            "Train",
            "2024-05-02T12:00:00+00:00",
        ),
        // … so this delayed delivery from 11:30 is recognised as stale.
        event(
            "UPDATED",
            &org,
            7,
            "Travel",
            "Bus",
            "2024-05-02T11:30:00+00:00",
        ),
    ] {
        assert_eq!(
            stack
                .post_fyle_webhook(workspace_id, &body)
                .await
                .unwrap()
                .status(),
            200
        );
    }
    eventually(WAIT, "all four events handled", || async {
        let seen = applied_count(&stack, workspace_id).await?
            + ignored_count(&stack, workspace_id).await?;
        Ok((seen == 4).then_some(()))
    })
    .await
    .unwrap();
    let rows = categories(&stack, workspace_id).await.unwrap();
    assert_eq!(
        rows.len(),
        1,
        "a rename updates the row (the incumbent adds one)"
    );
    assert_eq!(rows[0].value, "Travel / Train");
    assert_eq!(
        ignored_count(&stack, workspace_id).await.unwrap(),
        1,
        "the stale event is counted as ignored"
    );

    let deleted = serde_json::to_vec(&json!({"action": "DELETED", "resource": "CATEGORY",
        "data": {"id": 7, "org_id": org, "updated_at": "2024-05-02T13:00:00+00:00"}}))
    .unwrap();
    assert_eq!(
        stack
            .post_fyle_webhook(workspace_id, &deleted)
            .await
            .unwrap()
            .status(),
        200
    );
    let late = event(
        "UPDATED",
        &org,
        7,
        "Travel",
        "Ship",
        "2024-05-02T12:30:00+00:00",
    );
    assert_eq!(
        stack
            .post_fyle_webhook(workspace_id, &late)
            .await
            .unwrap()
            .status(),
        200
    );
    eventually(WAIT, "the delete and the late update handled", || async {
        let seen = applied_count(&stack, workspace_id).await?
            + ignored_count(&stack, workspace_id).await?;
        Ok((seen == 6).then_some(()))
    })
    .await
    .unwrap();
    let rows = categories(&stack, workspace_id).await.unwrap();
    assert_eq!(
        (rows[0].value.as_str(), rows[0].active),
        ("Travel / Train", false),
        "a late update does not revive a deleted value"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_kafka_can_never_take_is_set_aside_and_the_outbox_keeps_flowing() {
    use attrsync_db::diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
    use diesel::{QueryableByName, sql_types::BigInt};

    let stack = TestStack::start().await.unwrap();
    let (workspace_id, org) = stack.create_workspace().await.unwrap();
    let url = attrsync_db::url_with_schema(&stack.database.url, "fyle_sync").unwrap();
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    // An outbox row larger than Kafka's 1 MB message limit, ahead of everything else.
    diesel::sql_query("INSERT INTO outbox (topic, message_key, payload) VALUES ($1, '1', decode(repeat('ab', 1200000), 'hex'))")
        .bind::<diesel::sql_types::Text, _>(stack.topic(topics::EXPENSE_ATTRIBUTES_CHANGED))
        .execute(&mut conn)
        .await
        .unwrap();

    let body = category(&org, 42, "Office", "Supplies", "2024-05-02T10:00:00+00:00");
    assert_eq!(
        stack
            .post_fyle_webhook(workspace_id, &body)
            .await
            .unwrap()
            .status(),
        200
    );
    let changes = read_until(
        &stack.topic(topics::EXPENSE_ATTRIBUTES_CHANGED),
        WAIT,
        |seen| !seen.is_empty(),
    )
    .await
    .unwrap();
    assert_eq!(
        changes.len(),
        1,
        "the change event behind the oversized row was published"
    );
    let Some(Payload::ExpenseAttributesChanged(changed)) =
        envelope::decode(&changes[0].payload).unwrap().payload
    else {
        panic!("not a change event");
    };
    assert_eq!(changed.changes[0].value, "Office / Supplies");

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let rejected: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM outbox_rejected WHERE error ILIKE '%too large%'",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(rejected.n, 1);
    let waiting: Count = diesel::sql_query("SELECT count(*) AS n FROM outbox")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(waiting.n, 0);
    // Operators see it: a counter per topic on /metrics (the recorder is process-wide, and the
    // topic carries this test's prefix).
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
    let series = format!(
        "outbox_rejected_total{{topic=\"{}\"}} 1",
        stack.topic(topics::EXPENSE_ATTRIBUTES_CHANGED)
    );
    assert!(metrics.contains(&series), "{series} not in /metrics");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_webhooks_share_one_transaction_and_a_poison_one_is_dead_lettered_alone() {
    use attrsync_proto::v1::FyleAttributeWebhook;

    let stack = TestStack::start().await.unwrap();
    let (workspace_id, org) = stack.create_workspace().await.unwrap();
    // Written straight onto the topic all at once (the producer sends them together), so
    // the consumer finds them fetched together; message 25 cannot be understood.
    let payloads = (0..50)
        .map(|n| FyleAttributeWebhook {
            action: "CREATED".into(),
            resource: "CATEGORY".into(),
            data_json: if n == 25 {
                "{ not json".to_owned()
            } else {
                json!({"id": 1000 + n, "org_id": org, "name": "Batch",
                       "sub_category": format!("N{n}"), "is_enabled": true,
                       "updated_at": "2024-05-02T10:00:00+00:00"})
                .to_string()
            },
            ..Default::default()
        })
        .collect();
    stack
        .publish_all_directly(topics::FYLE_ATTRIBUTE_WEBHOOKS, workspace_id, payloads)
        .await
        .unwrap();
    let rows = eventually(WAIT, "49 categories", || async {
        let rows = categories(&stack, workspace_id).await?;
        Ok((rows.len() == 49).then_some(rows))
    })
    .await
    .unwrap();
    assert!(rows.iter().all(|r| r.source_id != "1025"));
    let progress = stack
        .fyle_sync_running()
        .consumer(topics::FYLE_ATTRIBUTE_WEBHOOKS)
        .unwrap();
    assert_eq!(progress.dead_lettered(), 1, "only the poison message");
    assert!(
        stack
            .failed_batches(topics::FYLE_ATTRIBUTE_WEBHOOKS)
            .await
            .unwrap()
            >= 1,
        "the batch holding the poison message failed and was split, and operators see it"
    );

    // Fewer transactions than messages means they were committed together.
    let transactions = transactions(&stack, "fyle_sync").await;
    assert!(
        transactions < 25,
        "50 messages took {transactions} transactions"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_webhooks_of_two_workspaces_applies_each_by_its_own_rules() {
    use attrsync_proto::v1::{ChangeKind, FyleAttributeWebhook};

    let stack = TestStack::start().await.unwrap();
    let (a, org_a) = stack.create_workspace().await.unwrap();
    let (b, org_b) = stack.create_workspace().await.unwrap();
    let hook =
        |action: &str, org: &str, id: i64, name: &str, sub: &str, at: &str| FyleAttributeWebhook {
            action: action.into(),
            resource: "CATEGORY".into(),
            data_json: json!({"id": id, "org_id": org, "name": name, "sub_category": sub,
                              "is_enabled": true, "updated_at": at})
            .to_string(),
            ..Default::default()
        };
    let (t0, t1, t2) = (
        "2024-05-01T10:00:00+00:00",
        "2024-05-02T10:00:00+00:00",
        "2024-05-03T10:00:00+00:00",
    );
    stack
        .publish_each_directly(
            topics::FYLE_ATTRIBUTE_WEBHOOKS,
            vec![
                (a, hook("CREATED", &org_a, 1, "Travel", "Old", t1)),
                (a, hook("CREATED", &org_a, 3, "Meals", "Lunch", t1)),
            ],
        )
        .await
        .unwrap();
    eventually(WAIT, "workspace a's first two categories", || async {
        Ok((categories(&stack, a).await?.len() == 2).then_some(()))
    })
    .await
    .unwrap();

    // Sent at once between padding, so they are fetched, hence applied, together.
    let padding = |from: i64| {
        (from..from + 20).map(|id| (b, hook("CREATED", &org_b, id, "Pad", &id.to_string(), t1)))
    };
    let batch: Vec<_> = padding(100)
        .chain([
            (a, hook("UPDATED", &org_a, 1, "Travel", "New", t2)),
            // The same Fyle id in another workspace is another object.
            (b, hook("CREATED", &org_b, 1, "Bee", "One", t1)),
            // Older than what is stored: stale.
            (a, hook("UPDATED", &org_a, 3, "Meals", "Dinner", t0)),
            // Another org's data sent for b: ignored.
            (b, hook("CREATED", &org_a, 2, "Foreign", "Org", t1)),
            (a, hook("CREATED", &org_a, 4, "Office", "Paper", t1)),
        ])
        .chain(padding(200))
        .collect();
    stack
        .publish_each_directly(topics::FYLE_ATTRIBUTE_WEBHOOKS, batch)
        .await
        .unwrap();
    eventually(WAIT, "all 47 webhooks handled", || async {
        let mut seen = 0;
        for workspace in [a, b] {
            seen +=
                applied_count(&stack, workspace).await? + ignored_count(&stack, workspace).await?;
        }
        Ok((seen == 47).then_some(()))
    })
    .await
    .unwrap();

    let values = |rows: Vec<ExpenseAttribute>| {
        let mut values: Vec<(String, String)> =
            rows.into_iter().map(|r| (r.source_id, r.value)).collect();
        values.sort();
        values
    };
    assert_eq!(
        values(categories(&stack, a).await.unwrap()),
        [
            ("1".to_owned(), "Travel / New".to_owned()),
            ("3".to_owned(), "Meals / Lunch".to_owned()),
            ("4".to_owned(), "Office / Paper".to_owned()),
        ]
    );
    let b_rows = values(categories(&stack, b).await.unwrap());
    assert_eq!(
        b_rows.len(),
        41,
        "40 padding categories and b's own category 1"
    );
    assert!(b_rows.contains(&("1".to_owned(), "Bee / One".to_owned())));
    assert!(
        !b_rows.iter().any(|(id, _)| id == "2"),
        "another org's data"
    );
    assert_eq!(
        (
            applied_count(&stack, a).await.unwrap(),
            ignored_count(&stack, a).await.unwrap(),
            applied_count(&stack, b).await.unwrap(),
            ignored_count(&stack, b).await.unwrap(),
        ),
        (4, 1, 41, 1),
        "(applied, ignored) of a, then of b"
    );

    // Workspace a's change events: the two creations, the rename with its old value, the
    // creation in the batch; nothing for the stale update.
    let changes_of_a = |seen: &[crate::kafka_reader::Raw]| -> Vec<(String, i32, String)> {
        seen.iter()
            .filter_map(|raw| envelope::decode(&raw.payload).ok())
            .filter(|e| e.workspace_id == a)
            .filter_map(|e| match e.payload {
                Some(Payload::ExpenseAttributesChanged(changed)) => Some(changed.changes),
                _ => None,
            })
            .flatten()
            .map(|c| (c.source_id, c.kind, c.old_value.unwrap_or_default()))
            .collect()
    };
    let seen = read_until(
        &stack.topic(topics::EXPENSE_ATTRIBUTES_CHANGED),
        WAIT,
        |seen| changes_of_a(seen).len() >= 4,
    )
    .await
    .unwrap();
    // The batch path, not the single path it falls back to, did this: no batch transaction
    // failed, and far fewer transactions than messages committed them.
    assert_eq!(
        stack
            .failed_batches(topics::FYLE_ATTRIBUTE_WEBHOOKS)
            .await
            .unwrap(),
        0
    );
    assert!(transactions(&stack, "fyle_sync").await < 24);
    let (created, renamed) = (ChangeKind::Created as i32, ChangeKind::Renamed as i32);
    assert_eq!(
        changes_of_a(&seen),
        [
            ("1".to_owned(), created, String::new()),
            ("3".to_owned(), created, String::new()),
            ("1".to_owned(), renamed, "Travel / Old".to_owned()),
            ("4".to_owned(), created, String::new()),
        ]
    );
    stack.stop().await;
}

/// How many transactions committed the consumed messages of `schema`'s service: `now()` is
/// fixed within a transaction, so the distinct `processed_at` stamps.
pub(crate) async fn transactions(stack: &TestStack, schema: &str) -> i64 {
    use attrsync_db::diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let url = attrsync_db::url_with_schema(&stack.database.url, schema).unwrap();
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    let count: Count =
        diesel::sql_query("SELECT count(DISTINCT processed_at) AS n FROM processed_events")
            .get_result(&mut conn)
            .await
            .unwrap();
    count.n
}
