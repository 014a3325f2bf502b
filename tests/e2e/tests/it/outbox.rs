//! The outbox relay against the real database: with Kafka unavailable nothing is lost, and
//! messages go out in order once it is back.

use std::sync::Mutex;

use attrsync_db::{
    diesel_async::{AsyncConnection as _, AsyncPgConnection},
    outbox::{self, NewOutboxMessage, OutboxMessage, OutboxPublisher, Published, RelayPass},
    testing::TestDatabase,
};

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
    let database =
        TestDatabase::create(&attrsync_e2e::admin_database_url(), &attrsync_e2e::TEMPLATE)
            .await
            .unwrap();
    let url = attrsync_db::url_with_schema(&database.url, "ingest").unwrap();
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    let messages: Vec<NewOutboxMessage> = (0..3)
        .map(|n| NewOutboxMessage {
            topic: "t".into(),
            message_key: Some("1".into()),
            payload: vec![n],
        })
        .collect();
    outbox::enqueue(&mut conn, &messages).await.unwrap();

    let pool = attrsync_db::connect(&attrsync_config::DatabaseConfig {
        url: database.url.clone(),
        schema: "ingest".into(),
        pool_size: 2,
    })
    .await
    .unwrap();
    let broker = Broker::default();
    let failed = outbox::relay_once(&pool, 1, 500, &broker).await;
    assert!(
        matches!(failed, Err(outbox::RelayError::Publish(_))),
        "{failed:?}"
    );
    assert_eq!(
        outbox::pending(&pool).await.unwrap(),
        3,
        "nothing is lost while Kafka is down"
    );

    *broker.up.lock().unwrap() = true;
    let pass = outbox::relay_once(&pool, 1, 500, &broker).await.unwrap();
    assert_eq!(
        pass,
        RelayPass::Relayed {
            published: 3,
            rejected: 0
        }
    );
    assert_eq!(
        *broker.received.lock().unwrap(),
        vec![vec![0], vec![1], vec![2]],
        "in insert order"
    );
    assert_eq!(outbox::pending(&pool).await.unwrap(), 0);
}
