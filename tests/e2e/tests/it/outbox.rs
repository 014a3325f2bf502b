//! The outbox relay against the real database: with Kafka unavailable nothing is lost, and
//! messages go out in order once it is back.

use std::sync::Mutex;

use attrsync_db::{
    diesel_async::{AsyncConnection as _, AsyncPgConnection},
    outbox::{
        self, NewOutboxMessage, OutboxMessage, OutboxPublisher, PassLimits, Published, RelayPass,
    },
    testing::TestDatabase,
};

async fn pool(database: &TestDatabase) -> attrsync_db::Pool {
    let env = attrsync_e2e::service_env("ingest", &database.url, "t.", None);
    let config = <ingest::Config as attrsync_config::ServiceConfig>::from_env_pairs(env).unwrap();
    attrsync_db::connect(&config.database).await.unwrap()
}

fn message(key: &str, byte: u8, size: usize) -> NewOutboxMessage {
    NewOutboxMessage {
        topic: "t".into(),
        message_key: Some(key.into()),
        payload: vec![byte; size],
        headers: serde_json::json!({"event-id": format!("e{byte}")}),
    }
}

/// Kafka that refuses the messages whose first byte is in `refuse` (for a reason that may
/// pass) and takes the rest, recording what it took with its headers.
struct Picky {
    refuse: Vec<u8>,
    taken: Mutex<Vec<(u8, String)>>,
}

impl OutboxPublisher for Picky {
    async fn publish(&self, messages: &[OutboxMessage]) -> Vec<Published> {
        messages
            .iter()
            .map(|m| {
                if self.refuse.contains(&m.payload[0]) {
                    return Published::Retry("timed out".into());
                }
                let event = m.header_pairs().first().map(|(_, v)| (*v).to_owned());
                self.taken
                    .lock()
                    .unwrap()
                    .push((m.payload[0], event.unwrap_or_default()));
                Published::Acknowledged
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failed_message_keeps_only_its_keys_remainder_and_the_rest_is_not_resent() {
    let database = attrsync_e2e::test_database().await;
    let pool = pool(&database).await;
    let mut conn = pool.get().await.unwrap();
    // Workspace a: 1, 2 (fails), 3; workspace b: 4, 5.
    let rows = [
        message("a", 1, 10),
        message("b", 4, 10),
        message("a", 2, 10),
        message("a", 3, 10),
        message("b", 5, 10),
    ];
    outbox::enqueue(&mut conn, &rows).await.unwrap();
    let picky = Picky {
        refuse: vec![2],
        taken: Mutex::default(),
    };
    let pass = outbox::relay_once(&pool, 1, PassLimits::default(), &picky)
        .await
        .unwrap();
    assert_eq!(
        pass,
        RelayPass::Relayed {
            published: 3,
            rejected: 0,
            kept: 2,
            retry_reason: Some("timed out".into()),
            more_waiting: true,
        }
    );
    assert_eq!(outbox::pending(&pool).await.unwrap(), 2, "2 and 3 wait");
    let ok = Picky {
        refuse: vec![],
        taken: Mutex::default(),
    };
    outbox::relay_once(&pool, 1, PassLimits::default(), &ok)
        .await
        .unwrap();
    assert_eq!(
        *ok.taken.lock().unwrap(),
        vec![(2, "e2".to_owned()), (3, "e3".to_owned())],
        "only the failed key's remainder is resent, in order, with its stored headers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_pass_is_capped_by_bytes_as_well_as_by_count() {
    let database = attrsync_e2e::test_database().await;
    let pool = pool(&database).await;
    let mut conn = pool.get().await.unwrap();
    let rows: Vec<NewOutboxMessage> = (1..=5).map(|n| message("a", n, 400_000)).collect();
    outbox::enqueue(&mut conn, &rows).await.unwrap();
    let broker = Picky {
        refuse: vec![],
        taken: Mutex::default(),
    };
    let limits = PassLimits {
        max_messages: 500,
        max_bytes: 1_000_000,
    };
    let pass = outbox::relay_once(&pool, 1, limits, &broker).await.unwrap();
    // 400 kB each: the third would pass 1 MB, so a pass takes three (the budget is checked
    // before each row), never all five; it says two still wait.
    assert_eq!(
        pass,
        RelayPass::Relayed {
            published: 3,
            rejected: 0,
            kept: 0,
            retry_reason: None,
            more_waiting: true,
        }
    );
    assert_eq!(outbox::pending(&pool).await.unwrap(), 2);
}

/// A stand-in for Kafka that is down (answers `Retry`) until switched on, then records.
#[derive(Default)]
struct Broker {
    up: Mutex<bool>,
    received: Mutex<Vec<Vec<u8>>>,
}

impl OutboxPublisher for Broker {
    async fn publish(&self, messages: &[OutboxMessage]) -> Vec<Published> {
        if !*self.up.lock().unwrap() {
            return messages
                .iter()
                .map(|_| Published::Retry("broker transport failure".into()))
                .collect();
        }
        self.received
            .lock()
            .unwrap()
            .extend(messages.iter().map(|m| m.payload.clone()));
        messages.iter().map(|_| Published::Acknowledged).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_kafka_down_messages_wait_in_the_outbox_and_go_out_in_order_when_it_returns() {
    let database = attrsync_e2e::test_database().await;
    let url = attrsync_db::url_with_schema(&database.url, "ingest").unwrap();
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    let messages: Vec<NewOutboxMessage> = (0..3)
        .map(|n| NewOutboxMessage {
            topic: "t".into(),
            message_key: Some("1".into()),
            payload: vec![n],
            headers: serde_json::json!({}),
        })
        .collect();
    outbox::enqueue(&mut conn, &messages).await.unwrap();

    let pool = pool(&database).await;
    let broker = Broker::default();
    let failed = outbox::relay_once(&pool, 1, PassLimits::default(), &broker)
        .await
        .unwrap();
    assert!(failed.failed().is_some(), "{failed:?}");
    assert_eq!(
        outbox::pending(&pool).await.unwrap(),
        3,
        "nothing is lost while Kafka is down"
    );

    *broker.up.lock().unwrap() = true;
    let pass = outbox::relay_once(&pool, 1, PassLimits::default(), &broker)
        .await
        .unwrap();
    assert_eq!(
        pass,
        RelayPass::Relayed {
            published: 3,
            rejected: 0,
            kept: 0,
            retry_reason: None,
            more_waiting: false,
        }
    );
    assert_eq!(
        *broker.received.lock().unwrap(),
        vec![vec![0], vec![1], vec![2]],
        "in insert order"
    );
    assert_eq!(outbox::pending(&pool).await.unwrap(), 0);
}

fn taker() -> Picky {
    Picky {
        refuse: vec![],
        taken: Mutex::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_relay_holding_the_lock_publishes_a_standby_notifies_it_and_takes_over_when_it_lets_go()
 {
    let database = attrsync_e2e::test_database().await;
    let pool = pool(&database).await;
    let mut conn = pool.get().await.unwrap();
    let (first_kafka, second_kafka) = (taker(), taker());
    let mut first = outbox::Relay::new(pool.clone(), 7, PassLimits::default());
    let mut second = outbox::Relay::new(pool.clone(), 7, PassLimits::default());

    outbox::enqueue(&mut conn, &[message("a", 1, 10), message("a", 2, 10)])
        .await
        .unwrap();
    assert!(matches!(
        first.pass(&first_kafka).await.unwrap(),
        RelayPass::Relayed { published: 2, .. }
    ));
    outbox::enqueue(&mut conn, &[message("a", 3, 10)])
        .await
        .unwrap();
    assert_eq!(
        second.pass(&second_kafka).await.unwrap(),
        RelayPass::Busy,
        "the lock outlives the first relay's pass"
    );
    assert_eq!(outbox::pending(&pool).await.unwrap(), 1);

    // The standby's Busy pass told the holder there is work.
    tokio::time::timeout(std::time::Duration::from_secs(5), first.notified())
        .await
        .expect("the holder is notified by the standby");

    first.release().await;
    assert!(matches!(
        second.pass(&second_kafka).await.unwrap(),
        RelayPass::Relayed { published: 1, .. }
    ));
    assert_eq!(
        *second_kafka.taken.lock().unwrap(),
        vec![(3, "e3".to_owned())]
    );
    assert_eq!(first_kafka.taken.lock().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_session_is_killed_reports_it_then_reconnects_and_relays() {
    let database = attrsync_e2e::test_database().await;
    let pool = pool(&database).await;
    let mut conn = pool.get().await.unwrap();
    let kafka = taker();
    let mut relay = outbox::Relay::new(pool.clone(), 8, PassLimits::default());
    relay.pass(&kafka).await.unwrap();

    #[derive(diesel::QueryableByName)]
    struct Killed {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let killed: Killed = attrsync_db::diesel_async::RunQueryDsl::get_result(
        diesel::sql_query(
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_locks \
             WHERE locktype = 'advisory' AND classid = 0 AND objid = 8 AND objsubid = 1 \
               AND granted \
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        ),
        &mut conn,
    )
    .await
    .unwrap();
    assert_eq!(killed.n, 1, "the relay's session held the lock");
    outbox::enqueue(&mut conn, &[message("a", 1, 10)])
        .await
        .unwrap();

    assert!(
        relay.pass(&kafka).await.is_err(),
        "the cut session is reported, not hidden"
    );
    assert!(matches!(
        relay.pass(&kafka).await.unwrap(),
        RelayPass::Relayed { published: 1, .. }
    ));
    assert_eq!(outbox::pending(&pool).await.unwrap(), 0);
}

/// Publishes one change event of `bytes` bytes per message, naming the message's event id.
struct BigPublisher {
    bytes: usize,
}

impl attrsync_kafka::handler::EffectHandler for BigPublisher {
    type Payload = attrsync_proto::v1::FyleOrgSettingWebhook;

    async fn apply(
        &self,
        tx: &mut attrsync_kafka::handler::Tx<'_>,
        event: &attrsync_kafka::handler::Event<'_, Self::Payload>,
    ) -> Result<(), attrsync_kafka::handler::EffectError> {
        let change = attrsync_proto::v1::ExpenseAttributeChange {
            source_id: event.event_id.to_owned(),
            value: "x".repeat(self.bytes),
            ..Default::default()
        };
        tx.publish(
            attrsync_kafka::topics::EXPENSE_ATTRIBUTES_CHANGED,
            event.workspace.workspace_id,
            attrsync_proto::v1::ExpenseAttributesChanged {
                changes: vec![change],
                origin: "test".into(),
            },
        );
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_publishing_more_than_the_flush_size_writes_every_message_once_in_order() {
    use attrsync_kafka::{Handler as _, Incoming, handler, workspaces};
    use prost::Message as _;

    let database = attrsync_e2e::test_database().await;
    let pool = pool(&database).await;
    let mut conn = pool.get().await.unwrap();
    let workspace = workspaces::ProjectedWorkspace {
        workspace_id: 41,
        fyle_org_id: "or41".into(),
        qbo_realm_id: None,
        fyle_webhook_sync_enabled: true,
        fyle_webhook_by_type: serde_json::json!({}),
        qbo_webhook_sync_enabled: false,
        qbo_webhook_by_entity: serde_json::json!({}),
        deleted: false,
        version: 1,
        snapshot: Vec::new(),
    };
    workspaces::apply(&mut conn, &workspace).await.unwrap();
    let kafka = attrsync_config::KafkaConfig {
        bootstrap: attrsync_e2e::kafka_bootstrap(),
        topic_prefix: "t.".into(),
        group_id: "t.batch".into(),
        partitions: 1,
        replication_factor: 1,
        max_attempts: 3,
        retry_backoff: std::time::Duration::from_millis(10),
        max_batch: 200,
    };
    let idempotent = handler::Idempotent::new(
        // Five messages of 1.5 MB: the batch writes the outbox after the third (4.5 MB) and
        // the rest at its end.
        BigPublisher { bytes: 1_500_000 },
        handler::Services {
            pool: pool.clone(),
            directory: workspaces::WorkspaceDirectory::new(
                pool.clone(),
                None,
                std::time::Duration::from_secs(5),
            ),
            kafka,
            relay: Default::default(),
            producer: "test",
            query_timeout: std::time::Duration::from_secs(30),
        },
    );
    let envelopes: Vec<_> = (0..5)
        .map(|_| {
            attrsync_kafka::envelope::new(
                41,
                "test",
                attrsync_proto::time::now(),
                attrsync_proto::Payload::FyleOrgSettingWebhook(
                    attrsync_proto::v1::FyleOrgSettingWebhook {
                        data_json: "{}".into(),
                        ..Default::default()
                    },
                ),
            )
        })
        .collect();
    let messages: Vec<Incoming<'_>> = envelopes
        .iter()
        .enumerate()
        .map(|(offset, envelope)| Incoming {
            topic: "t.fyle.org-settings.v1",
            partition: 0,
            offset: offset as i64,
            key: Some("41"),
            envelope: envelope.clone(),
            attempt: 1,
        })
        .collect();

    let outcome = idempotent.handle_batch(&messages).await;
    assert_eq!(outcome.applied, 5);
    assert!(outcome.error.is_none());
    let again = idempotent.handle_batch(&messages).await;
    assert_eq!(
        again.applied, 5,
        "a redelivered batch is done, not applied twice"
    );

    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Bytea)]
        payload: Vec<u8>,
    }
    let rows: Vec<Row> = attrsync_db::diesel_async::RunQueryDsl::load(
        diesel::sql_query("SELECT payload FROM outbox ORDER BY id"),
        &mut conn,
    )
    .await
    .unwrap();
    let published: Vec<String> = rows
        .iter()
        .map(|row| {
            let envelope = attrsync_proto::v1::Envelope::decode(row.payload.as_slice()).unwrap();
            match envelope.payload {
                Some(attrsync_proto::Payload::ExpenseAttributesChanged(changed)) => {
                    changed.changes[0].source_id.clone()
                }
                other => panic!("unexpected payload {other:?}"),
            }
        })
        .collect();
    let sent: Vec<String> = envelopes.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(
        published, sent,
        "each message's event once, in the batch's order"
    );
    #[derive(diesel::QueryableByName)]
    struct Transactions {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let transactions: Transactions = attrsync_db::diesel_async::RunQueryDsl::get_result(
        diesel::sql_query("SELECT count(DISTINCT xmin::text) AS n FROM outbox"),
        &mut conn,
    )
    .await
    .unwrap();
    assert_eq!(transactions.n, 1, "the batch committed as one transaction");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_lookup_answers_every_workspace_live_deleted_or_unknown() {
    use attrsync_kafka::workspaces::{self, Lookup};

    let database = attrsync_e2e::test_database().await;
    let pool = pool(&database).await;
    let mut conn = pool.get().await.unwrap();
    for (workspace_id, deleted) in [(51, false), (52, true)] {
        let row = workspaces::ProjectedWorkspace {
            workspace_id,
            fyle_org_id: format!("or{workspace_id}"),
            qbo_realm_id: None,
            fyle_webhook_sync_enabled: true,
            fyle_webhook_by_type: serde_json::json!({}),
            qbo_webhook_sync_enabled: false,
            qbo_webhook_by_entity: serde_json::json!({}),
            deleted,
            version: 1,
            snapshot: Vec::new(),
        };
        workspaces::apply(&mut conn, &row).await.unwrap();
    }
    let directory =
        workspaces::WorkspaceDirectory::new(pool.clone(), None, std::time::Duration::from_secs(5));

    let answers = directory.lookup_many(&[51, 52, 53]).await;

    assert_eq!(answers.len(), 3);
    assert!(matches!(&answers[&51], Lookup::Found(w) if !w.deleted && w.fyle_org_id == "or51"));
    assert!(matches!(&answers[&52], Lookup::Found(w) if w.deleted));
    assert_eq!(
        answers[&53],
        Lookup::Unknown,
        "not projected, and no mapping to ask"
    );
    for id in [51, 52, 53] {
        assert_eq!(
            answers[&id],
            directory.lookup(id).await,
            "as one lookup answers"
        );
    }
}

/// Kafka that takes nothing (a reason that may pass).
struct Down;

impl OutboxPublisher for Down {
    async fn publish(&self, messages: &[OutboxMessage]) -> Vec<Published> {
        messages
            .iter()
            .map(|_| Published::Retry("all brokers down".into()))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_whose_kafka_fails_lets_go_and_a_replica_whose_kafka_works_takes_over() {
    let database = attrsync_e2e::test_database().await;
    let pool = pool(&database).await;
    let mut conn = pool.get().await.unwrap();
    let mut cut_off = outbox::Relay::new(pool.clone(), 9, PassLimits::default());
    let mut healthy = outbox::Relay::new(pool.clone(), 9, PassLimits::default());
    let kafka = taker();
    outbox::enqueue(&mut conn, &[message("a", 1, 10)])
        .await
        .unwrap();

    let failed = cut_off.pass(&Down).await.unwrap();
    assert!(failed.failed().is_some());
    assert!(matches!(
        healthy.pass(&kafka).await.unwrap(),
        RelayPass::Relayed { published: 1, .. }
    ));
    assert_eq!(
        cut_off.pass(&kafka).await.unwrap(),
        RelayPass::Busy,
        "the healthy replica keeps the lock"
    );
}
