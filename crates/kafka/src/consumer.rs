//! The at-least-once consumer.
//!
//! Delivery guarantee: **at-least-once transport, idempotent effects.** A message's offset is
//! stored (and later committed) only after its handler returned `Ok`, which for every handler
//! in this system means its database transaction committed, including the row in
//! `processed_events` that makes a redelivery a no-op. Messages are handled one at a time, so
//! offsets advance in order within each partition and one workspace's events (one key, one
//! partition) are applied in the order they were produced. Stored offsets are committed every
//! second, synchronously when partitions are revoked in a rebalance, and at shutdown; what a
//! crash loses is at most re-applied, never skipped. One consumer handles one message at a
//! time, so while a message is retried every partition of that consumer waits; scale out with
//! partitions and replicas.
//!
//! Failure policy, by [`HandlerError`] kind:
//! - `Unavailable` (database or broker down): retried with capped exponential backoff until it
//!   succeeds; the consumer waits, because every message behind it would fail the same way
//!   and dead-lettering them would turn an outage into a replay job.
//! - `Failed` (this message failed, maybe transiently): retried up to `kafka.max_attempts`
//!   times, then written to `<topic>.dlq` with the error, and the partition moves on.
//! - `Poison` (can never succeed, e.g. undecodable bytes): dead-lettered at once.
//!
//! A dead letter that cannot be produced is itself `Unavailable`: the offset is not stored
//! until the dead letter is safely in Kafka.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
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
    ClientContext, Message,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    message::BorrowedMessage,
    message::Headers as _,
};
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
}

/// What a running consumer has done; read by health endpoints and tests.
#[derive(Debug, Default)]
pub struct ConsumerProgress {
    handled: AtomicU64,
    dead_lettered: AtomicU64,
    last_progress_ms: AtomicI64,
    waiting_on_dependency: AtomicBool,
    running: AtomicBool,
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

    /// True while a message waits for an unavailable dependency (the consumer is stalled).
    pub fn is_stalled(&self) -> bool {
        self.waiting_on_dependency.load(Ordering::Relaxed)
    }

    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    fn finished(&self, dead_lettered: bool) {
        self.handled.fetch_add(1, Ordering::Relaxed);
        if dead_lettered {
            self.dead_lettered.fetch_add(1, Ordering::Relaxed);
        }
        self.last_progress_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    }
}

/// The delay before retry number `attempt` (1-based): doubling from `base`, capped at `max`.
pub fn retry_delay(base: Duration, attempt: u32, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
    base.saturating_mul(factor).min(max)
}

/// Commits stored offsets synchronously before partitions are taken away, so the next owner
/// starts exactly after what this one applied.
struct CommitOnRevoke;

impl ClientContext for CommitOnRevoke {}

impl ConsumerContext for CommitOnRevoke {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance
            && partitions.count() > 0
            && let Err(e) = consumer.commit_consumer_state(CommitMode::Sync)
            && !is_nothing_to_commit(&e)
        {
            warn!(error = %e, "committing offsets on revoke failed");
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

/// Runs [`run`] on a task of `tasks`, logging the error it may stop with.
pub fn spawn<H: Handler>(
    tasks: &mut tokio::task::JoinSet<()>,
    config: &KafkaConfig,
    spec: ConsumerSpec,
    handler: Arc<H>,
    dlq_producer: Producer,
    progress: Arc<ConsumerProgress>,
    shutdown: CancellationToken,
) {
    let config = config.clone();
    tasks.spawn(async move {
        if let Err(e) = run(&config, spec, handler, dlq_producer, progress, shutdown).await {
            tracing::error!(error = %e, "consumer stopped with an error");
        }
    });
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
    let group = match spec.group_suffix {
        Some(suffix) => format!("{}.{}", config.group_id, suffix),
        None => config.group_id.clone(),
    };
    let consumer: StreamConsumer<CommitOnRevoke> = crate::base_client_config(config)
        .set("group.id", &group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("max.poll.interval.ms", "600000")
        .set("enable.partition.eof", "false")
        .create_with_context(CommitOnRevoke)?;
    let full_topics: Vec<String> = spec.topics.iter().map(|t| config.topic(t)).collect();
    let names: Vec<&str> = full_topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names)?;
    info!(group, topics = ?names, "consumer started");
    progress.running.store(true, Ordering::Relaxed);

    let worker = Worker {
        config,
        handler,
        dlq_producer,
        progress: progress.clone(),
        group: &group,
        shutdown: &shutdown,
    };
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => break,
            received = consumer.recv() => received,
        };
        let message = match received {
            Ok(message) => message,
            Err(e) => {
                warn!(error = %e, "consumer error; continuing");
                continue;
            }
        };
        match worker.process(&message).await {
            Outcome::Done => {
                if let Err(e) = consumer.store_offset_from_message(&message) {
                    warn!(error = %e, "storing offset failed (partition revoked?); it will be redelivered");
                }
            }
            Outcome::ShuttingDown => break,
        }
    }
    progress.running.store(false, Ordering::Relaxed);
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync)
        && !is_nothing_to_commit(&e)
    {
        warn!(error = %e, "final offset commit failed; uncommitted messages will be redelivered");
    }
    info!(group, "consumer stopped");
    Ok(())
}

enum Outcome {
    /// Applied or dead-lettered: store the offset.
    Done,
    /// Stopped before finishing: do not store the offset.
    ShuttingDown,
}

struct Worker<'a, H> {
    config: &'a KafkaConfig,
    handler: Arc<H>,
    dlq_producer: Producer,
    progress: Arc<ConsumerProgress>,
    group: &'a str,
    shutdown: &'a CancellationToken,
}

impl<H: Handler> Worker<'_, H> {
    async fn process(&self, message: &BorrowedMessage<'_>) -> Outcome {
        let payload = message.payload().unwrap_or_default();
        if payload.is_empty() {
            return self
                .dead_letter(message, "empty message (no envelope)", 1)
                .await;
        }
        let envelope = match envelope::decode(payload) {
            Ok(envelope) => envelope,
            Err(e) => {
                return self
                    .dead_letter(message, &format!("undecodable envelope: {e}"), 1)
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
        );
        // Kafka headers first (what any producer or tool can set), else the envelope's copy.
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
            attrsync_telemetry::set_parent(&span, headers);
        } else {
            attrsync_telemetry::set_parent(
                &span,
                envelope
                    .trace_context
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            );
        }
        self.apply_with_retries(message, envelope)
            .instrument(span)
            .await
    }

    async fn apply_with_retries(
        &self,
        message: &BorrowedMessage<'_>,
        envelope: Envelope,
    ) -> Outcome {
        let mut incoming = Incoming {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().and_then(|k| std::str::from_utf8(k).ok()),
            envelope,
            attempt: 1,
        };
        let mut unavailable_attempt = 0;
        loop {
            let result = self.handler.handle(&incoming).await;
            let error = match result {
                Ok(()) => {
                    self.progress
                        .waiting_on_dependency
                        .store(false, Ordering::Relaxed);
                    self.progress.finished(false);
                    return Outcome::Done;
                }
                Err(error) => error,
            };
            let delay = match &error {
                HandlerError::Poison(reason) => {
                    return self.dead_letter(message, reason, incoming.attempt).await;
                }
                HandlerError::Failed(reason) if incoming.attempt >= self.config.max_attempts => {
                    return self.dead_letter(message, reason, incoming.attempt).await;
                }
                HandlerError::Failed(_) => {
                    incoming.attempt += 1;
                    retry_delay(
                        self.config.retry_backoff,
                        incoming.attempt - 1,
                        Duration::from_secs(30),
                    )
                }
                HandlerError::Unavailable(_) => {
                    self.progress
                        .waiting_on_dependency
                        .store(true, Ordering::Relaxed);
                    unavailable_attempt += 1;
                    retry_delay(
                        self.config.retry_backoff,
                        unavailable_attempt,
                        Duration::from_secs(30),
                    )
                }
            };
            warn!(%error, attempt = incoming.attempt, ?delay, "handler failed; retrying");
            if self.sleep_or_shutdown(delay).await {
                return Outcome::ShuttingDown;
            }
        }
    }

    /// Writes the original message and the error to `<topic>.dlq`; retries until it can.
    async fn dead_letter(
        &self,
        message: &BorrowedMessage<'_>,
        error: &str,
        attempts: u32,
    ) -> Outcome {
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
        let bytes = dead.encode_to_vec();
        let mut attempt = 0;
        loop {
            match self
                .dlq_producer
                .send_raw(&dlq_topic, dead.key.as_deref(), &bytes, &[])
                .await
            {
                Ok(_) => {
                    self.progress
                        .waiting_on_dependency
                        .store(false, Ordering::Relaxed);
                    error!(
                        topic = message.topic(),
                        offset = message.offset(),
                        error,
                        "message dead-lettered"
                    );
                    self.progress.finished(true);
                    return Outcome::Done;
                }
                Err(e) => {
                    attempt += 1;
                    warn!(error = %e, "dead-lettering failed; retrying");
                    let delay =
                        retry_delay(self.config.retry_backoff, attempt, Duration::from_secs(30));
                    if self.sleep_or_shutdown(delay).await {
                        return Outcome::ShuttingDown;
                    }
                }
            }
        }
    }

    /// Sleeps; returns true if shutdown was requested meanwhile.
    async fn sleep_or_shutdown(&self, delay: Duration) -> bool {
        tokio::select! {
            () = self.shutdown.cancelled() => true,
            () = tokio::time::sleep(delay) => false,
        }
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
}
