//! The at-least-once consumer against the real broker: dead letters, bounded retries, offsets
//! committed only after success, redelivery after a stall.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use attrsync_config::KafkaConfig;
use attrsync_kafka::{
    ConsumerProgress, Handler, HandlerError, Incoming, Producer,
    consumer::{self, ConsumerSpec},
    envelope, topics,
};
use attrsync_proto::{
    Payload, time,
    v1::{DeadLetter, FyleOrgSettingWebhook},
};
use prost::Message as _;
use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
};
use tokio_util::sync::CancellationToken;

use crate::kafka_reader::read_until;

const TOPIC: &str = topics::FYLE_ORG_SETTINGS.name();
const SPEC: topics::TopicSpec = topics::FYLE_ORG_SETTINGS.spec();

fn config() -> KafkaConfig {
    let prefix = format!("t{}.", ulid::Ulid::new().to_string().to_lowercase());
    KafkaConfig {
        bootstrap: attrsync_e2e::kafka_bootstrap(),
        group_id: format!("{prefix}consumer-test"),
        topic_prefix: prefix,
        partitions: 1,
        replication_factor: 1,
        max_attempts: 3,
        retry_backoff: Duration::from_millis(10),
        max_batch: 200,
    }
}

/// Behaviour by workspace id: 1 succeeds, 2 always fails, 3 fails twice then succeeds,
/// 9 waits for its dependency while `dependency_down` is set.
#[derive(Default)]
struct Scripted {
    attempts: Mutex<HashMap<String, u32>>,
    applied: Mutex<Vec<i64>>,
    dependency_down: AtomicBool,
    /// The trace id each handled message ran under.
    traces: Mutex<Vec<Option<String>>>,
}

impl Handler for Scripted {
    async fn handle(&self, message: &Incoming<'_>) -> Result<(), HandlerError> {
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap();
            let n = attempts
                .entry(message.envelope.event_id.clone())
                .or_default();
            *n += 1;
            *n
        };
        let result = match message.envelope.workspace_id {
            2 => Err(HandlerError::Failed("always fails".into())),
            3 if attempt < 3 => Err(HandlerError::Failed("flaky".into())),
            9 if self.dependency_down.load(Ordering::SeqCst) => {
                Err(HandlerError::Unavailable("database down".into()))
            }
            _ => Ok(()),
        };
        if result.is_ok() {
            self.applied
                .lock()
                .unwrap()
                .push(message.envelope.workspace_id);
            let trace = attrsync_telemetry::trace_id(&tracing::Span::current());
            self.traces.lock().unwrap().push(trace);
        }
        result
    }
}

async fn produce(producer: &Producer, config: &KafkaConfig, workspace_id: i64) {
    let payload = Payload::FyleOrgSettingWebhook(FyleOrgSettingWebhook {
        data_json: "{}".into(),
        ..Default::default()
    });
    let envelope = envelope::new(workspace_id, "test", time::now(), payload);
    producer
        .send_raw(
            &config.topic(TOPIC),
            Some("k"),
            &envelope.encode_to_vec(),
            &[],
        )
        .await
        .unwrap();
}

fn start(
    config: &KafkaConfig,
    handler: Arc<Scripted>,
    producer: &Producer,
) -> (
    Arc<ConsumerProgress>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let progress = Arc::new(ConsumerProgress::default());
    let shutdown = CancellationToken::new();
    let (config, producer, p, s) = (
        config.clone(),
        producer.clone(),
        progress.clone(),
        shutdown.clone(),
    );
    let task = tokio::spawn(async move {
        let spec = ConsumerSpec {
            topics: vec![TOPIC],
            group_suffix: None,
        };
        consumer::run(&config, spec, handler, producer, p, s)
            .await
            .unwrap();
    });
    (progress, shutdown, task)
}

fn committed_offset(config: &KafkaConfig) -> Option<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &config.bootstrap)
        .set("group.id", &config.group_id)
        .create()
        .unwrap();
    let mut partitions = TopicPartitionList::new();
    partitions.add_partition(&config.topic(TOPIC), 0);
    let committed = consumer
        .committed_offsets(partitions, Duration::from_secs(10))
        .unwrap();
    match committed.elements()[0].offset() {
        Offset::Offset(n) => Some(n),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_messages_are_retried_a_bounded_number_of_times_then_dead_lettered() {
    let config = config();
    topics::ensure(&config, &[SPEC], &[SPEC]).await.unwrap();
    let producer = Producer::new(&config).unwrap();
    producer
        .send_raw(&config.topic(TOPIC), Some("k"), b"not protobuf at all", &[])
        .await
        .unwrap();
    for workspace in [2, 3, 1] {
        produce(&producer, &config, workspace).await;
    }
    let handler = Arc::new(Scripted::default());
    let (progress, shutdown, task) = start(&config, handler.clone(), &producer);
    attrsync_e2e::eventually(Duration::from_secs(60), "four messages handled", || async {
        Ok((progress.handled() == 4).then_some(()))
    })
    .await
    .unwrap();
    shutdown.cancel();
    task.await.unwrap();

    assert_eq!(
        *handler.applied.lock().unwrap(),
        vec![3, 1],
        "the partition moved on past the failures, in order"
    );
    assert_eq!(progress.dead_lettered(), 2);
    let dead = read_until(
        &config.topic(&topics::dlq(TOPIC)),
        Duration::from_secs(30),
        |seen| seen.len() >= 2,
    )
    .await
    .unwrap();
    let dead: Vec<DeadLetter> = dead
        .iter()
        .map(|m| DeadLetter::decode(m.payload.as_slice()).unwrap())
        .collect();
    assert_eq!(dead.len(), 2);
    assert_eq!(
        (dead[0].offset, dead[0].attempts),
        (0, 1),
        "poison goes at once"
    );
    assert!(dead[0].error.contains("undecodable"), "{}", dead[0].error);
    assert_eq!(
        dead[0].payload, b"not protobuf at all",
        "the original bytes are kept for replay"
    );
    assert_eq!(
        (dead[1].offset, dead[1].attempts, dead[1].error.as_str()),
        (1, 3, "always fails")
    );
    assert_eq!(
        committed_offset(&config),
        Some(4),
        "everything handled is committed on shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_waiting_for_a_dependency_is_not_committed_and_is_redelivered_after_restart() {
    let config = config();
    topics::ensure(&config, &[SPEC], &[SPEC]).await.unwrap();
    let producer = Producer::new(&config).unwrap();
    produce(&producer, &config, 1).await;
    produce(&producer, &config, 9).await;
    let handler = Arc::new(Scripted::default());
    handler.dependency_down.store(true, Ordering::SeqCst);

    let (progress, shutdown, task) = start(&config, handler.clone(), &producer);
    attrsync_e2e::eventually(Duration::from_secs(60), "the consumer to stall", || async {
        Ok(progress.is_stalled().then_some(()))
    })
    .await
    .unwrap();
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(
        committed_offset(&config),
        Some(1),
        "only the applied message is committed"
    );
    assert_eq!(
        progress.dead_lettered(),
        0,
        "an outage does not dead-letter"
    );

    handler.dependency_down.store(false, Ordering::SeqCst);
    let (progress, shutdown, task) = start(&config, handler.clone(), &producer);
    attrsync_e2e::eventually(Duration::from_secs(60), "the redelivery", || async {
        Ok((progress.handled() == 1).then_some(()))
    })
    .await
    .unwrap();
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(*handler.applied.lock().unwrap(), vec![1, 9]);
    assert_eq!(committed_offset(&config), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handler_runs_in_the_trace_named_by_the_kafka_headers() {
    attrsync_telemetry::init_for_tests();
    let config = config();
    topics::ensure(&config, &[SPEC], &[SPEC]).await.unwrap();
    let producer = Producer::new(&config).unwrap();
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let payload = Payload::FyleOrgSettingWebhook(FyleOrgSettingWebhook {
        data_json: "{}".into(),
        ..Default::default()
    });
    let envelope = envelope::new(1, "test", time::now(), payload);
    let traceparent = format!("00-{trace_id}-b7ad6b7169203331-01");
    producer
        .send_raw(
            &config.topic(TOPIC),
            Some("k"),
            &envelope.encode_to_vec(),
            &[("traceparent", traceparent.as_str())],
        )
        .await
        .unwrap();
    let handler = Arc::new(Scripted::default());
    let (progress, shutdown, task) = start(&config, handler.clone(), &producer);
    attrsync_e2e::eventually(Duration::from_secs(60), "the message handled", || async {
        Ok((progress.handled() == 1).then_some(()))
    })
    .await
    .unwrap();
    shutdown.cancel();
    task.await.unwrap();
    assert_eq!(progress.dead_lettered(), 0);
    assert_eq!(
        *handler.traces.lock().unwrap(),
        vec![Some(trace_id.to_owned())]
    );
}

/// Applies every message except workspace 9's while `hold` is set (its dependency is down).
#[derive(Default)]
struct HoldsNine {
    hold: AtomicBool,
    applied: Mutex<Vec<i64>>,
}

impl Handler for HoldsNine {
    async fn handle(&self, message: &Incoming<'_>) -> Result<(), HandlerError> {
        if message.envelope.workspace_id == 9 && self.hold.load(Ordering::SeqCst) {
            return Err(HandlerError::Unavailable("database down".into()));
        }
        self.applied
            .lock()
            .unwrap()
            .push(message.envelope.workspace_id);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_waits_holds_only_its_partition_and_other_workspaces_go_on() {
    let config = KafkaConfig {
        partitions: 2,
        ..config()
    };
    topics::ensure(&config, &[SPEC], &[SPEC]).await.unwrap();
    let producer = Producer::new(&config).unwrap();
    let send = |workspace_id: i64, key: String| {
        let producer = producer.clone();
        let topic = config.topic(TOPIC);
        async move {
            let payload = Payload::FyleOrgSettingWebhook(FyleOrgSettingWebhook::default());
            let envelope = envelope::new(workspace_id, "test", time::now(), payload);
            producer
                .send_raw(&topic, Some(&key), &envelope.encode_to_vec(), &[])
                .await
                .unwrap()
                .0
        }
    };
    // Workspace 9 on one partition; find a key that lands on the other for workspace 1.
    let held_partition = send(9, "held".into()).await;
    let mut other_key = None;
    for n in 0..64 {
        let key = format!("other-{n}");
        if send(1, key.clone()).await != held_partition {
            other_key = Some(key);
            break;
        }
    }
    let other_key = other_key.expect("a key on the other partition");
    let handler = Arc::new(HoldsNine::default());
    handler.hold.store(true, Ordering::SeqCst);
    let progress = Arc::new(ConsumerProgress::default());
    let shutdown = CancellationToken::new();
    let task = {
        let (config, producer, handler, progress, shutdown) = (
            config.clone(),
            producer.clone(),
            handler.clone(),
            progress.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            let spec = ConsumerSpec {
                topics: vec![TOPIC],
                group_suffix: None,
            };
            consumer::run(&config, spec, handler, producer, progress, shutdown)
                .await
                .unwrap();
        })
    };
    attrsync_e2e::eventually(Duration::from_secs(60), "the held partition", || async {
        Ok((progress.held_partitions() == 1).then_some(()))
    })
    .await
    .unwrap();
    // While workspace 9 waits, a new message of workspace 2 on the other partition is applied.
    send(2, other_key).await;
    attrsync_e2e::eventually(Duration::from_secs(30), "workspace 2 applied", || async {
        Ok(handler.applied.lock().unwrap().contains(&2).then_some(()))
    })
    .await
    .unwrap();
    assert!(!handler.applied.lock().unwrap().contains(&9));
    assert_eq!(progress.held_partitions(), 1, "9 still waits");
    handler.hold.store(false, Ordering::SeqCst);
    attrsync_e2e::eventually(Duration::from_secs(30), "workspace 9 applied", || async {
        Ok(handler.applied.lock().unwrap().contains(&9).then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(progress.held_partitions(), 0);
    assert_eq!(progress.dead_lettered(), 0, "waiting is not failing");
    shutdown.cancel();
    task.await.unwrap();
}
