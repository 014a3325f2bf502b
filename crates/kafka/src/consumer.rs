//! The at-least-once consumer.
//!
//! Delivery guarantee: **at-least-once transport, idempotent effects.** A message's offset is
//! stored (and later committed) only after its handler returned `Ok`, which for every handler
//! in this system means its database transaction committed, including the row in
//! `processed_events` that makes a redelivery a no-op (see [`crate::handler`]). Within a
//! partition messages are handled strictly in order, so one workspace's events (one key, one
//! partition) are applied in the order they were produced. Stored offsets are committed every
//! second, synchronously when partitions are revoked in a rebalance, and at shutdown; what a
//! crash loses is at most re-applied, never skipped.
//!
//! **Batches.** What is already fetched when a message arrives (up to `kafka.max_batch`) is
//! grouped by partition and handed to [`Handler::handle_batch`] in order; the idempotent
//! handlers commit such a group in one transaction. The groups of different partitions run
//! concurrently (a key, hence a workspace, lives in one partition, so no order between them
//! is owed); the consumer waits for all of them before it fetches again. Offsets are stored
//! for exactly the messages the handler reports done; the first one it could not apply takes
//! the single-message path below.
//!
//! **A message that must wait holds only its partition.** When a handler asks for a retry, the
//! message's partition is paused (`rd_kafka_pause_partitions`) and the message is held, with
//! anything of that partition that was already fetched queued behind it; the loop keeps
//! polling, so other partitions go on being applied, rebalances proceed and the consumer never
//! exceeds `max.poll.interval.ms`. When the held message succeeds (or is dead-lettered), its
//! queue is drained in order and the partition resumed. A partition revoked while held is
//! dropped: its new owner starts from the last committed offset.
//!
//! Failure policy, by [`HandlerError`] kind:
//! - `Unavailable` (database, broker or a service down): retried with capped exponential
//!   backoff until it succeeds — dead-lettering would turn an outage into a replay job.
//! - `Failed` (this message failed, maybe transiently): retried up to `kafka.max_attempts`
//!   times, then written to `<topic>.dlq` with the error, and the partition moves on.
//! - `Poison` (can never succeed, e.g. undecodable bytes): dead-lettered at once.
//!
//! A dead letter that cannot be produced is itself `Unavailable`: the offset is not stored
//! until the dead letter is safely in Kafka.

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use attrsync_config::KafkaConfig;
use attrsync_proto::{
    time,
    v1::{DeadLetter, Envelope},
};
use prost::Message as _;
use rdkafka::{
    ClientContext, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    message::{Headers as _, OwnedMessage},
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, warn};

use crate::{Producer, Result, envelope, topics};

/// One decoded message handed to a [`Handler`].
#[derive(Debug)]
pub struct Incoming<'a> {
    /// The full topic name (with the deployment's prefix).
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a str>,
    pub envelope: Envelope,
    /// 1 for the first try.
    pub attempt: u32,
}

/// Why a handler could not apply a message; decides what the consumer does next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    #[error("dependency unavailable: {0}")]
    Unavailable(String),
    #[error("message failed: {0}")]
    Failed(String),
    #[error("message can never succeed: {0}")]
    Poison(String),
}

/// Applies messages. Implementations must be idempotent on `envelope.event_id`.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        message: &Incoming<'_>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Applies consecutive messages of one partition, in order — in one transaction where the
    /// handler can. Returns how many of the first messages are done and, if it stopped early,
    /// the error of the next one. The default handles them one by one.
    fn handle_batch(&self, messages: &[Incoming<'_>]) -> impl Future<Output = BatchOutcome> + Send {
        handle_each(self, messages)
    }
}

/// What [`Handler::handle_batch`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// The first `applied` messages are done (their effects committed).
    pub applied: usize,
    /// Why message number `applied` was not, if the batch stopped early.
    pub error: Option<HandlerError>,
}

/// Handles `messages` one at a time, stopping at the first error.
pub async fn handle_each<H: Handler + ?Sized>(
    handler: &H,
    messages: &[Incoming<'_>],
) -> BatchOutcome {
    for (applied, message) in messages.iter().enumerate() {
        if let Err(error) = handler.handle(message).await {
            return BatchOutcome {
                applied,
                error: Some(error),
            };
        }
    }
    BatchOutcome {
        applied: messages.len(),
        error: None,
    }
}

/// What a running consumer has done; read by the service's health checks and by tests.
#[derive(Debug, Default)]
pub struct ConsumerProgress {
    handled: AtomicU64,
    dead_lettered: AtomicU64,
    last_progress_ms: AtomicI64,
    /// Unix ms since which the consumer has held unfinished work without finishing any; 0
    /// when it has none.
    busy_since_ms: AtomicI64,
    held_partitions: AtomicUsize,
    waiting_on_dependency: AtomicBool,
    running: AtomicBool,
    exited: AtomicBool,
}

impl ConsumerProgress {
    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered.load(Ordering::Relaxed)
    }

    /// Unix milliseconds of the last message finished (applied or dead-lettered), 0 if none.
    pub fn last_progress_ms(&self) -> i64 {
        self.last_progress_ms.load(Ordering::Relaxed)
    }

    /// True while some message waits for an unavailable dependency.
    pub fn is_stalled(&self) -> bool {
        self.waiting_on_dependency.load(Ordering::Relaxed)
    }

    /// Partitions paused behind a message that waits or retries.
    pub fn held_partitions(&self) -> usize {
        self.held_partitions.load(Ordering::Relaxed)
    }

    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    /// True once the consume loop has returned (for whatever reason).
    pub fn has_exited(&self) -> bool {
        self.exited.load(Ordering::Relaxed)
    }

    /// How long the consumer has held work without finishing anything, if it holds any.
    pub fn stuck_for(&self, now_ms: i64) -> Option<Duration> {
        let since = self.busy_since_ms.load(Ordering::Relaxed);
        (since > 0).then(|| Duration::from_millis(u64::try_from(now_ms - since).unwrap_or(0)))
    }

    fn started_work(&self) {
        let now = chrono::Utc::now().timestamp_millis();
        let _ = self
            .busy_since_ms
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn finished(&self, dead_lettered: bool, more_work: bool) {
        self.handled.fetch_add(1, Ordering::Relaxed);
        if dead_lettered {
            self.dead_lettered.fetch_add(1, Ordering::Relaxed);
        }
        let now = chrono::Utc::now().timestamp_millis();
        self.last_progress_ms.store(now, Ordering::Relaxed);
        self.busy_since_ms
            .store(if more_work { now } else { 0 }, Ordering::Relaxed);
    }
}

/// The delay before retry number `attempt` (1-based): doubling from `base`, capped at `max`.
pub fn retry_delay(base: Duration, attempt: u32, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
    base.saturating_mul(factor).min(max)
}

type PartitionKey = (String, i32);

/// Commits stored offsets synchronously before partitions are taken away, so the next owner
/// starts exactly after what this one applied; tells the loop what was revoked and assigned.
#[derive(Default)]
struct RebalanceContext {
    revoked: Mutex<Vec<PartitionKey>>,
    assigned: Mutex<Vec<PartitionKey>>,
}

fn partitions_of(list: &TopicPartitionList) -> Vec<PartitionKey> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance
            && partitions.count() > 0
        {
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync)
                && !is_nothing_to_commit(&e)
            {
                warn!(error = %e, "committing offsets on revoke failed");
            }
            if let Ok(mut revoked) = self.revoked.lock() {
                revoked.extend(partitions_of(partitions));
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance
            && let Ok(mut assigned) = self.assigned.lock()
        {
            assigned.extend(partitions_of(partitions));
        }
    }
}

/// "No offset stored": nothing was consumed since the last commit, which is not a failure.
fn is_nothing_to_commit(error: &rdkafka::error::KafkaError) -> bool {
    error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::NoOffset)
}

/// A consumer group member bound to some topics and one handler.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    /// Un-prefixed topic names.
    pub topics: Vec<&'static str>,
    /// The group id suffix; the group is `<kafka.group_id>` or `<kafka.group_id>.<suffix>`.
    pub group_suffix: Option<&'static str>,
}

/// A message that waits, with what of its partition was fetched behind it.
struct Held {
    queue: VecDeque<OwnedMessage>,
    /// The try the head message is on (1-based), for `Failed` retries.
    attempt: u32,
    /// Consecutive `Unavailable` answers, for the backoff.
    unavailable: u32,
    due: Instant,
}

/// What one try of a message came to.
enum Step {
    /// Applied or dead-lettered: store the offset.
    Done { dead_lettered: bool },
    /// Try again after `delay`.
    Retry {
        delay: Duration,
        attempt: u32,
        unavailable: u32,
    },
}

/// Runs the consume loop until `shutdown` is cancelled; commits stored offsets before returning.
pub async fn run<H: Handler>(
    config: &KafkaConfig,
    spec: ConsumerSpec,
    handler: Arc<H>,
    dlq_producer: Producer,
    progress: Arc<ConsumerProgress>,
    shutdown: CancellationToken,
) -> Result<()> {
    let outcome = consume(config, spec, handler, dlq_producer, &progress, shutdown).await;
    progress.running.store(false, Ordering::Relaxed);
    progress.exited.store(true, Ordering::Relaxed);
    outcome
}

async fn consume<H: Handler>(
    config: &KafkaConfig,
    spec: ConsumerSpec,
    handler: Arc<H>,
    dlq_producer: Producer,
    progress: &Arc<ConsumerProgress>,
    shutdown: CancellationToken,
) -> Result<()> {
    let group = match spec.group_suffix {
        Some(suffix) => format!("{}.{}", config.group_id, suffix),
        None => config.group_id.clone(),
    };
    let consumer: StreamConsumer<RebalanceContext> = crate::base_client_config(config)
        .set("group.id", &group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("max.poll.interval.ms", "300000")
        .set("enable.partition.eof", "false")
        .create_with_context(RebalanceContext::default())?;
    let full_topics: Vec<String> = spec.topics.iter().map(|t| config.topic(t)).collect();
    let names: Vec<&str> = full_topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names)?;
    info!(group, topics = ?names, "consumer started");
    progress.running.store(true, Ordering::Relaxed);

    let worker = Worker {
        config,
        handler,
        dlq_producer,
        group: &group,
        shutdown: &shutdown,
    };
    let mut held: HashMap<PartitionKey, Held> = HashMap::new();
    'consume: loop {
        forget_revoked(&consumer, &mut held, progress);

        let now = Instant::now();
        let due: Vec<PartitionKey> = held
            .iter()
            .filter(|(_, h)| h.due <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if !worker.drain(&consumer, &mut held, key, progress).await {
                break 'consume;
            }
        }

        let next_due = held
            .values()
            .map(|h| h.due)
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        let received = tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep_until(next_due) => continue,
            received = consumer.recv() => received,
        };
        let message = match received {
            Ok(message) => message.detach(),
            Err(e) => {
                warn!(error = %e, "consumer error; continuing");
                continue;
            }
        };
        // Whatever else is already fetched joins it (no waiting), up to `kafka.max_batch`.
        let mut fetched = vec![message];
        while fetched.len() < config.max_batch {
            match tokio::time::timeout(Duration::ZERO, consumer.recv()).await {
                Ok(Ok(more)) => fetched.push(more.detach()),
                _ => break,
            }
        }
        let mut ready = Vec::new();
        for (key, batch) in by_partition(fetched) {
            if let Some(waiting) = held.get_mut(&key) {
                // Fetched before the pause took effect: it waits behind the held message.
                waiting.queue.extend(batch);
                continue;
            }
            ready.push((key, batch));
        }
        if ready.is_empty() {
            continue;
        }
        progress.started_work();
        // Partitions are independent (a key lives in one): their batches run at once, each in
        // order; offsets and holds are then settled one partition after the other.
        let runs = futures::future::join_all(
            ready
                .into_iter()
                .map(|(key, batch)| worker.run_partition(key, batch)),
        )
        .await;
        let mut go_on = true;
        for run in runs {
            go_on &= worker.settle(&consumer, run, &mut held, progress);
        }
        if !go_on {
            break 'consume;
        }
    }
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync)
        && !is_nothing_to_commit(&e)
    {
        warn!(error = %e, "final offset commit failed; uncommitted messages will be redelivered");
    }
    info!(group, "consumer stopped");
    Ok(())
}

/// Drops held partitions that a rebalance took away, and makes sure newly assigned
/// partitions are not left paused from an earlier assignment.
fn forget_revoked(
    consumer: &StreamConsumer<RebalanceContext>,
    held: &mut HashMap<PartitionKey, Held>,
    progress: &ConsumerProgress,
) {
    let context = consumer.context();
    let revoked = context
        .revoked
        .lock()
        .map(|mut r| std::mem::take(&mut *r))
        .unwrap_or_default();
    for key in revoked {
        if held.remove(&key).is_some() {
            info!(topic = %key.0, partition = key.1, "held partition revoked; its new owner resumes from the committed offset");
        }
    }
    let assigned = context
        .assigned
        .lock()
        .map(|mut a| std::mem::take(&mut *a))
        .unwrap_or_default();
    for key in assigned.iter().filter(|k| !held.contains_key(*k)) {
        pause(consumer, key, false);
    }
    progress
        .held_partitions
        .store(held.len(), Ordering::Relaxed);
}

fn pause(consumer: &StreamConsumer<RebalanceContext>, key: &PartitionKey, paused: bool) {
    let mut list = TopicPartitionList::new();
    if list
        .add_partition_offset(&key.0, key.1, Offset::Invalid)
        .is_err()
    {
        return;
    }
    let outcome = if paused {
        consumer.pause(&list)
    } else {
        consumer.resume(&list)
    };
    if let Err(e) = outcome {
        warn!(error = %e, topic = %key.0, partition = key.1, paused, "pausing/resuming a partition failed");
    }
}

fn store_offset(consumer: &StreamConsumer<RebalanceContext>, message: &OwnedMessage) {
    // librdkafka stores `offset + 1`, the next message to read.
    if let Err(e) = consumer.store_offset(message.topic(), message.partition(), message.offset()) {
        warn!(error = %e, "storing offset failed (partition revoked?); it will be redelivered");
    }
}

/// Messages grouped by partition, each group in fetch order, groups in order of first
/// appearance.
fn by_partition(messages: Vec<OwnedMessage>) -> Vec<(PartitionKey, Vec<OwnedMessage>)> {
    let mut groups: Vec<(PartitionKey, Vec<OwnedMessage>)> = Vec::new();
    for message in messages {
        let key = (message.topic().to_owned(), message.partition());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, group)) => group.push(message),
            None => groups.push((key, vec![message])),
        }
    }
    groups
}

/// What became of one partition's fetched messages ([`Worker::run_partition`]).
struct PartitionRun {
    key: PartitionKey,
    /// Done (applied or dead-lettered: the flag), in order.
    finished: Vec<(OwnedMessage, bool)>,
    /// The message that must wait and everything behind it.
    hold: Option<Held>,
    /// Shutdown stopped it.
    interrupted: bool,
}

struct Worker<'a, H> {
    config: &'a KafkaConfig,
    handler: Arc<H>,
    dlq_producer: Producer,
    group: &'a str,
    shutdown: &'a CancellationToken,
}

impl<H: Handler> Worker<'_, H> {
    /// Applies one partition's fetched messages in batches, until one must wait (the rest is
    /// to be held behind it) or shutdown interrupts. Touches no consumer state: [`Self::settle`]
    /// stores the offsets and holds the partition.
    async fn run_partition(&self, key: PartitionKey, batch: Vec<OwnedMessage>) -> PartitionRun {
        let mut rest = VecDeque::from(batch);
        let mut finished = Vec::new();
        while !rest.is_empty() {
            let Some((done, failed)) = self.try_batch(rest.make_contiguous()).await else {
                return PartitionRun {
                    key,
                    finished,
                    hold: None,
                    interrupted: true,
                };
            };
            for _ in 0..done {
                if let Some(message) = rest.pop_front() {
                    finished.push((message, false));
                }
            }
            match failed {
                None => {}
                Some(Step::Done { dead_lettered }) => {
                    if let Some(message) = rest.pop_front() {
                        finished.push((message, dead_lettered));
                    }
                }
                Some(Step::Retry {
                    delay,
                    attempt,
                    unavailable,
                }) => {
                    return PartitionRun {
                        key,
                        finished,
                        hold: Some(Held {
                            queue: rest,
                            attempt,
                            unavailable,
                            due: Instant::now() + delay,
                        }),
                        interrupted: false,
                    };
                }
            }
        }
        PartitionRun {
            key,
            finished,
            hold: None,
            interrupted: false,
        }
    }

    /// Stores the offsets of a partition run's finished messages, in order, and holds its
    /// partition (paused) when a message must wait. Returns false when shutdown was requested.
    fn settle(
        &self,
        consumer: &StreamConsumer<RebalanceContext>,
        run: PartitionRun,
        held: &mut HashMap<PartitionKey, Held>,
        progress: &ConsumerProgress,
    ) -> bool {
        let count = run.finished.len();
        for (i, (message, dead_lettered)) in run.finished.iter().enumerate() {
            store_offset(consumer, message);
            let more = i + 1 < count || run.hold.is_some() || !held.is_empty();
            progress.finished(*dead_lettered, more);
        }
        if let Some(hold) = run.hold {
            pause(consumer, &run.key, true);
            progress
                .waiting_on_dependency
                .store(hold.unavailable > 0, Ordering::Relaxed);
            held.insert(run.key, hold);
            progress
                .held_partitions
                .store(held.len(), Ordering::Relaxed);
        }
        !run.interrupted
    }

    /// First tries of consecutive messages of one partition: the decodable prefix goes to
    /// [`Handler::handle_batch`]. Returns how many are done and what became of the next one
    /// (dead-lettered, or to be retried); `None` when shutdown interrupted it.
    async fn try_batch(&self, messages: &[OwnedMessage]) -> Option<(usize, Option<Step>)> {
        let mut incoming = Vec::with_capacity(messages.len());
        for message in messages {
            match message
                .payload()
                .filter(|p| !p.is_empty())
                .map(envelope::decode)
            {
                Some(Ok(envelope)) => incoming.push(Incoming {
                    topic: message.topic(),
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message.key().and_then(|k| std::str::from_utf8(k).ok()),
                    envelope,
                    attempt: 1,
                }),
                _ => break,
            }
        }
        if incoming.is_empty() {
            // The first message does not decode: the single-message path dead-letters it.
            return Some((0, Some(self.try_once(&messages[0], 1, 0).await?)));
        }
        if incoming.len() == 1 {
            let step = self.try_once(&messages[0], 1, 0).await?;
            return Some(match step {
                Step::Done {
                    dead_lettered: false,
                } => (1, None),
                other => (0, Some(other)),
            });
        }
        let span = tracing::info_span!(
            "consume_batch",
            topic = messages[0].topic(),
            partition = messages[0].partition(),
            first_offset = messages[0].offset(),
            messages = incoming.len(),
        );
        continue_trace(&span, &messages[0], &incoming[0].envelope);
        let outcome = self.handler.handle_batch(&incoming).instrument(span).await;
        let done = outcome.applied.min(incoming.len());
        if outcome.error.is_none() && done == incoming.len() {
            return Some((done, None));
        }
        // The message after the applied prefix takes the single-message path (its error
        // policy, its dead letter), starting from its first try.
        let next = &messages[done];
        Some((done, Some(self.try_once(next, 1, 0).await?)))
    }

    /// Retries the held head of `key` and drains its queue while messages succeed; resumes the
    /// partition when the queue is empty. Returns false when shutdown was requested.
    async fn drain(
        &self,
        consumer: &StreamConsumer<RebalanceContext>,
        held: &mut HashMap<PartitionKey, Held>,
        key: PartitionKey,
        progress: &ConsumerProgress,
    ) -> bool {
        loop {
            let Some(state) = held.get_mut(&key) else {
                return true;
            };
            let Some(head) = state.queue.front() else {
                held.remove(&key);
                pause(consumer, &key, false);
                progress
                    .waiting_on_dependency
                    .store(held.values().any(|h| h.unavailable > 0), Ordering::Relaxed);
                progress
                    .held_partitions
                    .store(held.len(), Ordering::Relaxed);
                return true;
            };
            match self.try_once(head, state.attempt, state.unavailable).await {
                None => return false,
                Some(Step::Done { dead_lettered }) => {
                    store_offset(consumer, head);
                    state.queue.pop_front();
                    state.attempt = 1;
                    state.unavailable = 0;
                    progress.finished(dead_lettered, true);
                }
                Some(Step::Retry {
                    delay,
                    attempt,
                    unavailable,
                }) => {
                    state.attempt = attempt;
                    state.unavailable = unavailable;
                    state.due = Instant::now() + delay;
                    progress
                        .waiting_on_dependency
                        .store(unavailable > 0, Ordering::Relaxed);
                    return true;
                }
            }
        }
    }

    /// One try of `message`: decode, handle, dead-letter when the policy says so. `None` when
    /// shutdown interrupted it.
    async fn try_once(
        &self,
        message: &OwnedMessage,
        attempt: u32,
        unavailable: u32,
    ) -> Option<Step> {
        let payload = message.payload().unwrap_or_default();
        if payload.is_empty() {
            return self
                .dead_letter(message, "empty message (no envelope)", attempt)
                .await;
        }
        let envelope = match envelope::decode(payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                return self
                    .dead_letter(message, &format!("undecodable envelope: {e}"), attempt)
                    .await;
            }
        };
        let span = tracing::info_span!(
            "consume",
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            event_id = %envelope.event_id,
            workspace_id = envelope.workspace_id,
            attempt,
        );
        continue_trace(&span, message, &envelope);
        let incoming = Incoming {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().and_then(|k| std::str::from_utf8(k).ok()),
            envelope,
            attempt,
        };
        let result = self.handler.handle(&incoming).instrument(span).await;
        let backoff = self.config.retry_backoff;
        let cap = Duration::from_secs(30);
        match result {
            Ok(()) => Some(Step::Done {
                dead_lettered: false,
            }),
            Err(HandlerError::Poison(reason)) => self.dead_letter(message, &reason, attempt).await,
            Err(HandlerError::Failed(reason)) if attempt >= self.config.max_attempts => {
                self.dead_letter(message, &reason, attempt).await
            }
            Err(error @ HandlerError::Failed(_)) => {
                warn!(%error, attempt, "handler failed; its partition waits for the retry");
                Some(Step::Retry {
                    delay: retry_delay(backoff, attempt, cap),
                    attempt: attempt + 1,
                    unavailable: 0,
                })
            }
            Err(error @ HandlerError::Unavailable(_)) => {
                warn!(%error, waits = unavailable + 1, "dependency unavailable; its partition waits");
                Some(Step::Retry {
                    delay: retry_delay(backoff, unavailable + 1, cap),
                    attempt,
                    unavailable: unavailable + 1,
                })
            }
        }
    }

    /// Writes the original message and the error to `<topic>.dlq`. If that fails, the message
    /// is retried as unavailable: its offset is not stored until the dead letter is in Kafka.
    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        error: &str,
        attempts: u32,
    ) -> Option<Step> {
        if self.shutdown.is_cancelled() {
            return None;
        }
        let dead = DeadLetter {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: message.payload().unwrap_or_default().to_vec(),
            error: error.to_owned(),
            attempts,
            failed_at: Some(time::now()),
            consumer_group: self.group.to_owned(),
        };
        let dlq_topic = topics::dlq(message.topic());
        match self
            .dlq_producer
            .send_raw(&dlq_topic, dead.key.as_deref(), &dead.encode_to_vec(), &[])
            .await
        {
            Ok(_) => {
                error!(
                    topic = message.topic(),
                    offset = message.offset(),
                    error,
                    "message dead-lettered"
                );
                metrics::counter!("consumer_dead_letters_total", "topic" => message.topic().to_owned())
                    .increment(1);
                Some(Step::Done {
                    dead_lettered: true,
                })
            }
            Err(e) => {
                warn!(error = %e, "dead-lettering failed; the message waits");
                Some(Step::Retry {
                    delay: self.config.retry_backoff.max(Duration::from_millis(500)),
                    attempt: attempts,
                    unavailable: 1,
                })
            }
        }
    }
}

/// Continues the trace named in the Kafka headers (what any producer or tool can set), else
/// the envelope's copy.
fn continue_trace(span: &tracing::Span, message: &OwnedMessage, envelope: &Envelope) {
    let headers: Vec<(&str, &str)> = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .filter_map(|h| Some((h.key, std::str::from_utf8(h.value?).ok()?)))
                .collect()
        })
        .unwrap_or_default();
    if headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("traceparent"))
    {
        attrsync_telemetry::set_parent(span, headers);
    } else {
        attrsync_telemetry::set_parent(
            span,
            envelope
                .trace_context
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_and_are_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        let delays: Vec<u128> = (1..=7)
            .map(|a| retry_delay(base, a, max).as_millis())
            .collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(retry_delay(base, 500, max), max);
    }

    #[test]
    fn a_consumer_holding_work_reports_how_long_it_is_stuck() {
        let progress = ConsumerProgress::default();
        assert_eq!(progress.stuck_for(1_000), None);
        progress.busy_since_ms.store(400, Ordering::Relaxed);
        assert_eq!(progress.stuck_for(1_000), Some(Duration::from_millis(600)));
        progress.finished(false, false);
        assert_eq!(progress.stuck_for(i64::MAX), None);
    }
}
