//! Kafka faults at ingest's edge (issue 8): webhooks that arrive while Kafka is down are all
//! accepted (stored in ingest's outbox) and reach `fyle.attribute-webhooks.v1` exactly once, in
//! each workspace's order, when it returns; a webhook delivered twice is published once.
//!
//! The outage test runs a Kafka broker of its own through `deploy/stack.sh` (its own
//! `STACK_DIR` and ports, PostgreSQL left to the shared stack through `DATABASE_URL`), so
//! stopping it disturbs no other test: the shared broker is never stopped. mapping, ingest and
//! fyle-sync run in this process against that broker and the shared PostgreSQL.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::TcpStream,
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use attrsync_db::diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
use attrsync_e2e::{
    TestStack, admin_database_url, eventually, kafka_bootstrap,
    scratch::{ScratchStack, free_port},
};
use attrsync_kafka::topics;
use diesel::{QueryableByName, sql_types::BigInt};
use rdkafka::{
    ClientConfig, Message as _, Offset, TopicPartitionList,
    consumer::{Consumer as _, StreamConsumer},
};
use serde_json::{Value, json};
use tokio::{sync::Semaphore, task::JoinSet, time::Instant};

/// Outage test: `WORKSPACES` workspaces, `PER_WORKSPACE` webhooks each, posted one workspace
/// after the other's answer (so each workspace's posting order is defined) and the workspaces
/// in parallel (at most `WORKSPACES` requests in flight).
const WORKSPACES: usize = 10;
const PER_WORKSPACE: usize = 100;
/// Posted after recovery, last: everything before it in the outbox is published before it.
const BARRIER_ID: i64 = 9_999_999;
/// How long the outbox may take to drain once Kafka is back, and reading the topic.
const DRAIN: Duration = Duration::from_secs(60);
const READ: Duration = Duration::from_secs(30);
/// Kafka stays down until ingest's relay has given up a pass: its producer's sends time out
/// after `message.timeout.ms` (30 s), so the relay's keep-and-retry path runs, not only a
/// send that waits for the broker to return. Bounded by this.
const RELAY_GIVES_UP: Duration = Duration::from_secs(50);

/// A Kafka broker of this test's own, through `deploy/stack.sh`.
struct Broker {
    stack: ScratchStack,
    port: u16,
}

impl Broker {
    fn new() -> Self {
        let port = free_port(&[]);
        let controller_port = free_port(&[port]);
        // A port nothing listens on, so the shared stack's `DATABASE_URL` differs from this
        // stack's own PostgreSQL address and stack.sh neither starts, reuses nor re-profiles a
        // PostgreSQL.
        let pg_port = free_port(&[port, controller_port]);
        let env = vec![
            ("STACK_KAFKA_PORT".to_owned(), port.to_string()),
            (
                "STACK_KAFKA_CONTROLLER_PORT".to_owned(),
                controller_port.to_string(),
            ),
            ("STACK_PG_PORT".to_owned(), pg_port.to_string()),
            // Set and not this stack's own address: "use mine", PostgreSQL is not started.
            ("DATABASE_URL".to_owned(), admin_database_url()),
            ("KAFKA_HEAP_OPTS".to_owned(), "-Xmx384m -Xms128m".to_owned()),
        ];
        // `make test` exports the shared broker's address; set, stack.sh would use it.
        Self {
            stack: ScratchStack::new("kafka-outage", env, &["KAFKA_BOOTSTRAP"]),
            port,
        }
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn run(&self, args: &[&str]) -> anyhow::Result<()> {
        self.stack.run(args).await
    }

    /// Lets stack.sh use the shared stack's Kafka jars (a symlink; stack.sh checks the pom's
    /// hash and fetches its own when they differ) instead of running Maven again.
    fn share_jars(&self) {
        let shared = std::env::var_os("STACK_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.stack")))
            .join("kafka/lib");
        if shared.join(".pom.sha256").is_file() {
            std::fs::create_dir_all(self.stack.dir.join("kafka")).unwrap();
            std::os::unix::fs::symlink(&shared, self.stack.dir.join("kafka/lib")).unwrap();
        }
    }

    /// True when `up` started a broker from this directory (it did not reuse another).
    fn started_here(&self) -> bool {
        self.stack.dir.join("kafka/kafka.pid").is_file()
    }

    fn answers(&self) -> bool {
        TcpStream::connect_timeout(
            &([127, 0, 0, 1], self.port).into(),
            Duration::from_millis(500),
        )
        .is_ok()
    }
}

/// Rate limits out of the way: the tests post faster than a real Fyle org would.
fn generous_limits() -> Vec<(String, String)> {
    [
        ("INGEST__RATE_LIMIT__PER_WORKSPACE_PER_SECOND", "100000"),
        ("INGEST__RATE_LIMIT__BURST", "100000"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .into()
}

/// What ingest's health says of its outbox relay (`ok`, or how long it has been failing).
async fn relay_check(stack: &TestStack) -> String {
    let report = stack.ingest_running().health.report().await;
    report
        .checks
        .get("outbox relay")
        .cloned()
        .unwrap_or_default()
}

/// A versioned CATEGORY webhook; `seq` is also in `sub_category` and orders `updated_at`.
fn category(org: &str, id: i64, seq: usize) -> Vec<u8> {
    let base = chrono::DateTime::parse_from_rfc3339("2024-05-02T10:00:00+00:00").unwrap();
    let updated_at = (base + chrono::Duration::seconds(seq as i64)).to_rfc3339();
    serde_json::to_vec(&json!({
        "action": "CREATED",
        "resource": "CATEGORY",
        "data": {"id": id, "org_id": org, "name": "Travel", "sub_category": format!("seq {seq}"),
                 "is_enabled": true, "updated_at": updated_at},
    }))
    .unwrap()
}

/// An answer: the HTTP status (0: none) and, when 200, its `status` and `delivery_id`.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    outcome: String,
    delivery_id: String,
}

async fn post(http: &reqwest::Client, url: &str, body: Vec<u8>) -> Answer {
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    match response {
        Ok(response) => {
            let status = response.status().as_u16();
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            let field = |name: &str| answer[name].as_str().unwrap_or_default().to_owned();
            Answer {
                status,
                outcome: field("status"),
                delivery_id: field("delivery_id"),
            }
        }
        Err(e) => Answer {
            status: 0,
            outcome: e.to_string(),
            delivery_id: String::new(),
        },
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Messages waiting in ingest's outbox (not yet acknowledged by Kafka).
async fn outbox_pending(stack: &TestStack) -> anyhow::Result<i64> {
    let mut conn = AsyncPgConnection::establish(&stack.database.url).await?;
    let count: Count = diesel::sql_query("SELECT count(*) AS n FROM ingest.outbox")
        .get_result(&mut conn)
        .await?;
    Ok(count.n)
}

/// One attribute webhook message as read from the topic.
#[derive(Debug)]
struct Published {
    partition: i32,
    workspace_id: i64,
    data_id: Option<i64>,
}

fn published(partition: i32, payload: &[u8]) -> Published {
    let envelope = attrsync_kafka::envelope::decode(payload).ok();
    let data_id = envelope.as_ref().and_then(|e| match &e.payload {
        Some(attrsync_proto::Payload::FyleAttributeWebhook(hook)) => {
            serde_json::from_str::<Value>(&hook.data_json).ok()?["id"].as_i64()
        }
        _ => None,
    });
    Published {
        partition,
        workspace_id: envelope.map_or(0, |e| e.workspace_id),
        data_id,
    }
}

/// Every message of every partition of `topic` on `bootstrap`, from the beginning up to the
/// high watermarks read when called (so: everything acknowledged before the call), in each
/// partition's order; fails after `timeout`.
async fn read_to_end(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<Published>> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("reader-{}", ulid::Ulid::new()))
        .set("enable.auto.commit", "false")
        .create()?;
    let ends: BTreeMap<i32, i64> = tokio::task::block_in_place(|| {
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        anyhow::ensure!(!partitions.is_empty(), "{topic} has no partitions");
        partitions
            .into_iter()
            .map(|p| {
                let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
                Ok((p, high))
            })
            .collect()
    })?;
    let mut assignment = TopicPartitionList::new();
    for &p in ends.keys() {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut next: BTreeMap<i32, i64> = ends.keys().map(|&p| (p, 0)).collect();
    let mut seen = Vec::new();
    let deadline = Instant::now() + timeout;
    while ends.iter().any(|(p, end)| next[p] < *end) {
        let message = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "{topic}: read {} messages, not at {ends:?} after {timeout:?}",
                    seen.len()
                )
            })??;
        next.insert(message.partition(), message.offset() + 1);
        seen.push(published(
            message.partition(),
            message.payload().unwrap_or_default(),
        ));
    }
    Ok(seen)
}

/// Waits until ingest's outbox is empty (every accepted webhook acknowledged by Kafka).
async fn outbox_drained(stack: &TestStack, timeout: Duration) -> anyhow::Result<()> {
    eventually(timeout, "ingest's outbox to drain", || async {
        Ok((outbox_pending(stack).await? == 0).then_some(()))
    })
    .await
}

/// The workspace's URL as ingest hands it out (retried while ingest learns the workspace).
async fn webhook_url(stack: &TestStack, workspace_id: i64) -> String {
    eventually(
        Duration::from_secs(20),
        "ingest to hand out the webhook URL",
        || async { Ok(stack.webhook_url(workspace_id).await.ok()) },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_down_while_1000_webhooks_arrive_loses_nothing_and_keeps_per_workspace_order() {
    attrsync_telemetry::init_for_tests();
    let test_started = Instant::now();
    let broker = Broker::new();
    assert_ne!(
        broker.bootstrap(),
        kafka_bootstrap(),
        "the test stops its own broker, never the shared one"
    );
    std::fs::create_dir_all(&broker.stack.dir).unwrap();
    broker.share_jars();
    broker.run(&["up"]).await.unwrap();
    assert!(
        broker.started_here(),
        "stack.sh started the test's own broker"
    );
    let first_up = test_started.elapsed();

    // Readiness reports the relay failing after its first failed pass, which the test waits for.
    let mut ingest_env = generous_limits();
    ingest_env.push(("INGEST__HEALTH__RELAY_FAILING_AFTER".into(), "1s".into()));
    let stack = TestStack::start_with_kafka(&broker.bootstrap(), ingest_env)
        .await
        .unwrap();
    let topic = stack.topic(topics::FYLE_ATTRIBUTE_WEBHOOKS);
    let mut workspaces = Vec::new();
    for _ in 0..WORKSPACES {
        let (id, org) = stack.create_workspace().await.unwrap();
        workspaces.push((id, org.clone(), webhook_url(&stack, id).await));
    }
    let data_id = |w: usize, seq: usize| 1_000_000 + (w * 1_000 + seq) as i64;

    // The fault: Kafka stopped before the webhooks arrive.
    let stopping = Instant::now();
    broker.run(&["down"]).await.unwrap();
    let stopped_in = stopping.elapsed();
    assert!(!broker.answers(), "the test's broker is down");

    // 1,000 webhooks while it is down: each workspace's in order, the workspaces in parallel.
    let posting = Instant::now();
    let mut senders = JoinSet::new();
    for (w, (_, org, url)) in workspaces.iter().enumerate() {
        let (http, org, url) = (stack.http.clone(), org.clone(), url.clone());
        senders.spawn(async move {
            let mut answers = Vec::with_capacity(PER_WORKSPACE);
            for seq in 0..PER_WORKSPACE {
                let answer = post(&http, &url, category(&org, data_id(w, seq), seq)).await;
                answers.push((data_id(w, seq), answer));
            }
            answers
        });
    }
    let answers: Vec<(i64, Answer)> =
        tokio::time::timeout(Duration::from_secs(60), senders.join_all())
            .await
            .expect("every webhook is answered within 60 s")
            .into_iter()
            .flatten()
            .collect();
    let posted_in = posting.elapsed();
    let not_accepted: Vec<&(i64, Answer)> = answers
        .iter()
        .filter(|(_, a)| a.status != 200 || a.outcome != "accepted")
        .collect();
    let pending_while_down = outbox_pending(&stack).await.unwrap();
    let relay_before = relay_check(&stack).await;
    // Down until the relay gave up a pass and kept its messages (they are resent later).
    let relay_failing = eventually(
        RELAY_GIVES_UP,
        "ingest's outbox relay to report a failed pass while Kafka is down",
        || async { Ok(Some(relay_check(&stack).await).filter(|check| check != "ok")) },
    )
    .await
    .unwrap();
    let pending_after_failure = outbox_pending(&stack).await.unwrap();
    assert!(
        !broker.answers(),
        "the broker stayed down while the webhooks arrived"
    );

    // Recovery: Kafka started again (same data directory), the outbox drains.
    let restarting = Instant::now();
    let outage = restarting - stopping;
    broker.run(&["up"]).await.unwrap();
    let restarted_in = restarting.elapsed();
    let barrier = post(
        &stack.http,
        &workspaces[0].2,
        category(&workspaces[0].1, BARRIER_ID, 0),
    )
    .await;
    outbox_drained(&stack, DRAIN).await.unwrap();
    let drained_after = restarting.elapsed();
    let messages = read_to_end(&broker.bootstrap(), &topic, READ)
        .await
        .unwrap();

    let barriers = messages
        .iter()
        .filter(|m| m.data_id == Some(BARRIER_ID))
        .count();
    let webhooks: Vec<&Published> = messages
        .iter()
        .filter(|m| m.data_id != Some(BARRIER_ID))
        .collect();
    let distinct: HashSet<Option<i64>> = webhooks.iter().map(|m| m.data_id).collect();
    let partitions: HashSet<i32> = messages.iter().map(|m| m.partition).collect();
    let mut order: HashMap<i64, Vec<i64>> = HashMap::new();
    for m in &webhooks {
        order
            .entry(m.workspace_id)
            .or_default()
            .push(m.data_id.unwrap_or(-1));
    }
    let out_of_order: Vec<i64> = workspaces
        .iter()
        .enumerate()
        .filter(|(w, (id, _, _))| {
            let expected: Vec<i64> = (0..PER_WORKSPACE).map(|seq| data_id(*w, seq)).collect();
            order.get(id) != Some(&expected)
        })
        .map(|(_, (id, _, _))| *id)
        .collect();
    println!(
        "kafka_outage: broker up in {first_up:?}, stopped in {stopped_in:?}; posted {} webhooks \
         to {WORKSPACES} workspaces in {posted_in:?} while Kafka was down: accepted {}, not \
         accepted {}, waiting in the outbox {pending_while_down}; relay then {relay_before:?}, \
         later {relay_failing:?} with {pending_after_failure} still in the outbox; Kafka down \
         for {outage:?}, restarted in {restarted_in:?}, outbox drained {drained_after:?} after the restart began; read {} \
         messages from {} partition(s): {} webhooks ({} distinct) + {barriers} barrier; \
         workspaces out of order {}; total {:?}",
        answers.len(),
        answers.len() - not_accepted.len(),
        not_accepted.len(),
        messages.len(),
        partitions.len(),
        webhooks.len(),
        distinct.len(),
        out_of_order.len(),
        test_started.elapsed(),
    );

    assert_eq!(answers.len(), WORKSPACES * PER_WORKSPACE);
    assert!(
        not_accepted.is_empty(),
        "{} webhooks were not accepted while Kafka was down, the first: {:?}",
        not_accepted.len(),
        &not_accepted[..not_accepted.len().min(10)]
    );
    assert_eq!(
        pending_while_down,
        (WORKSPACES * PER_WORKSPACE) as i64,
        "every accepted webhook waited in ingest's outbox while Kafka was down"
    );
    assert_eq!(
        pending_after_failure, pending_while_down,
        "the relay's failed pass kept every message"
    );
    assert_eq!(
        (barrier.status, barrier.outcome.as_str()),
        (200, "accepted"),
        "the barrier was accepted after the recovery"
    );
    assert_eq!(barriers, 1, "the barrier is on the topic once");
    assert_eq!(
        webhooks.len(),
        WORKSPACES * PER_WORKSPACE,
        "exactly one message per accepted webhook"
    );
    let expected: HashSet<Option<i64>> = (0..WORKSPACES)
        .flat_map(|w| (0..PER_WORKSPACE).map(move |seq| Some(data_id(w, seq))))
        .collect();
    assert_eq!(distinct, expected, "every webhook once, no duplicate");
    assert!(
        out_of_order.is_empty(),
        "workspaces whose messages are not in posting order: {out_of_order:?}"
    );

    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_webhook_delivered_twice_is_published_once() {
    const N: usize = 200;
    const WORKSPACES: usize = 4;
    const IN_FLIGHT: usize = 16;
    let started = Instant::now();
    let stack = TestStack::start_with_ingest_env(generous_limits())
        .await
        .unwrap();
    let topic = stack.topic(topics::FYLE_ATTRIBUTE_WEBHOOKS);
    let mut workspaces = Vec::new();
    for _ in 0..WORKSPACES {
        let (id, org) = stack.create_workspace().await.unwrap();
        workspaces.push((org, webhook_url(&stack, id).await));
    }

    // Each body delivered twice: every other one both at once, the rest one after the other.
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut senders = JoinSet::new();
    for i in 0..N {
        let (org, url) = workspaces[i % WORKSPACES].clone();
        let (http, permits) = (stack.http.clone(), permits.clone());
        senders.spawn(async move {
            let _permit = permits.acquire_owned().await.unwrap();
            let body = category(&org, 2_000_000 + i as i64, i);
            let (first, second) = if i % 2 == 0 {
                tokio::join!(post(&http, &url, body.clone()), post(&http, &url, body))
            } else {
                let first = post(&http, &url, body.clone()).await;
                (first, post(&http, &url, body).await)
            };
            (i, first, second)
        });
    }
    let answers = tokio::time::timeout(Duration::from_secs(60), senders.join_all())
        .await
        .expect("every delivery is answered within 60 s");
    let barrier = post(
        &stack.http,
        &workspaces[0].1,
        category(&workspaces[0].0, BARRIER_ID, 0),
    )
    .await;
    outbox_drained(&stack, DRAIN).await.unwrap();
    let messages = read_to_end(&kafka_bootstrap(), &topic, READ).await.unwrap();

    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut wrong = Vec::new();
    for (i, first, second) in &answers {
        for a in [first, second] {
            *outcomes
                .entry(format!("{} {}", a.status, a.outcome))
                .or_default() += 1;
        }
        let mut pair = [first.outcome.as_str(), second.outcome.as_str()];
        pair.sort_unstable();
        if first.status != 200
            || second.status != 200
            || pair != ["accepted", "duplicate"]
            || first.delivery_id != second.delivery_id
        {
            wrong.push((i, first.clone(), second.clone()));
        }
    }
    let barriers = messages
        .iter()
        .filter(|m| m.data_id == Some(BARRIER_ID))
        .count();
    let mut per_id: BTreeMap<i64, usize> = BTreeMap::new();
    for m in messages.iter().filter(|m| m.data_id != Some(BARRIER_ID)) {
        *per_id.entry(m.data_id.unwrap_or(-1)).or_default() += 1;
    }
    let twice: Vec<(&i64, &usize)> = per_id.iter().filter(|(_, n)| **n > 1).collect();
    println!(
        "kafka_outage: delivered {N} webhooks twice each ({} requests, answers {outcomes:?}); \
         read {} messages: {} distinct webhooks + {barriers} barrier, published more than \
         once {}; in {:?}",
        2 * answers.len(),
        messages.len(),
        per_id.len(),
        twice.len(),
        started.elapsed(),
    );

    assert_eq!(answers.len(), N);
    assert!(
        wrong.is_empty(),
        "{} bodies were not answered accepted once and duplicate once with one delivery id, \
         the first: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert_eq!(
        (barrier.status, barrier.outcome.as_str()),
        (200, "accepted")
    );
    assert_eq!(barriers, 1, "the barrier is on the topic once");
    assert!(twice.is_empty(), "published more than once: {twice:?}");
    let expected: BTreeMap<i64, usize> = (0..N).map(|i| (2_000_000 + i as i64, 1)).collect();
    assert_eq!(per_id, expected, "each webhook published exactly once");
    assert_eq!(messages.len(), N + 1);

    stack.stop().await;
}
