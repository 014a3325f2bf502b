//! The outbox relay: publishes what a service committed to its outbox.
//!
//! It wakes when the service says it enqueued something ([`RelayHandle::wake`]), when another
//! replica's relay notifies it (see [`attrsync_db::outbox`]), and otherwise polls every
//! `idle_poll`, so messages left by a crashed process are published too; after a pass that
//! left rows waiting (more than a pass takes) it passes again at once. A pass that could
//! not publish everything (Kafka or the database down) keeps what was not acknowledged, lets
//! the lock go and is retried with backoff; see [`attrsync_db::outbox`] for ordering, the
//! per-key rule and the delivery guarantee. How long the relay has been failing
//! is visible in [`RelayHandle::failing_for`], which the service's health reads.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use attrsync_db::{
    Pool,
    outbox::{self, OutboxMessage, OutboxPublisher, PassLimits, Published},
};
use rdkafka::{error::KafkaError, types::RDKafkaErrorCode};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::{Producer, consumer::retry_delay};

/// Wakes the relay after a commit that enqueued messages; reports whether it is failing.
#[derive(Debug, Clone, Default)]
pub struct RelayHandle {
    notify: Arc<Notify>,
    /// Unix ms of the first failed pass of the current failing streak; 0 when passing.
    failing_since_ms: Arc<AtomicI64>,
}

impl RelayHandle {
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// How long the relay has been failing at `now_ms`, if it is.
    pub fn failing_for(&self, now_ms: i64) -> Option<Duration> {
        let since = self.failing_since_ms.load(Ordering::Relaxed);
        (since > 0).then(|| Duration::from_millis(u64::try_from(now_ms - since).unwrap_or(0)))
    }

    fn record(&self, failed: bool) {
        if failed {
            let now = chrono::Utc::now().timestamp_millis();
            let _ = self.failing_since_ms.compare_exchange(
                0,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        } else {
            self.failing_since_ms.store(0, Ordering::Relaxed);
        }
    }
}

/// Publishes outbox rows with the service's producer. Rows hold already-prefixed topic names.
#[derive(Debug, Clone)]
pub struct KafkaOutboxPublisher {
    producer: Producer,
}

impl OutboxPublisher for KafkaOutboxPublisher {
    async fn publish(&self, messages: &[OutboxMessage]) -> Vec<Published> {
        let sends = messages.iter().map(|m| async move {
            let headers = m.header_pairs();
            match self
                .producer
                .send_raw(&m.topic, m.message_key.as_deref(), &m.payload, &headers)
                .await
            {
                Ok(_) => {
                    // Commit to acknowledgement: how long a committed change waited for Kafka.
                    let lag = chrono::Utc::now() - m.created_at;
                    metrics::histogram!("outbox_relay_lag_seconds")
                        .record(lag.num_microseconds().unwrap_or(0) as f64 / 1e6);
                    Published::Acknowledged
                }
                Err(crate::KafkaError::Client(e)) if is_permanent(&e) => {
                    Published::Rejected(e.to_string())
                }
                Err(e) => Published::Retry(e.to_string()),
            }
        });
        // Sent concurrently: the idempotent producer keeps per-partition order.
        futures::future::join_all(sends).await
    }
}

/// Errors no retry can fix: the message is too large, the record malformed, or the topic name
/// invalid. (`InvalidMessage` is a CRC failure on the wire, which a resend fixes.)
pub fn is_permanent(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidTopic
        )
    )
}

/// Runs the relay until `shutdown`; drains what it can before returning.
pub async fn run(
    pool: Pool,
    producer: Producer,
    lock_name: String,
    handle: RelayHandle,
    idle_poll: Duration,
    shutdown: CancellationToken,
) {
    let publisher = KafkaOutboxPublisher { producer };
    let lock_key = attrsync_db::advisory_key(&format!("outbox:{lock_name}"));
    let mut relay = outbox::Relay::new(pool, lock_key, PassLimits::default());
    let mut failures = 0;
    loop {
        let pass = relay.pass(&publisher).await;
        let (more_waiting, failed) = match &pass {
            Ok(pass) => {
                if let Some(reason) = pass.failed() {
                    warn!(
                        reason,
                        "outbox relay: some messages were not taken; they stay queued"
                    );
                }
                (pass.more_waiting(), pass.failed().is_some())
            }
            Err(e) => {
                warn!(error = %e, "outbox relay pass failed; messages stay queued");
                (false, true)
            }
        };
        handle.record(failed);
        if failed {
            failures += 1;
        } else {
            failures = 0;
            if more_waiting {
                continue;
            }
        }
        let wait = if failures > 0 {
            retry_delay(
                Duration::from_millis(200),
                failures,
                Duration::from_secs(10),
            )
        } else {
            idle_poll
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = handle.notify.notified() => {}
            () = relay.notified(), if failures == 0 => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
    // Publish what was committed just before shutdown, briefly; anything left waits for the
    // next start (or another replica). Until a pass finds nothing: work still finishing commits
    // meanwhile, and a wake-up is no longer waited for.
    let drain = async {
        while let Ok(pass) = relay.pass(&publisher).await {
            if !pass.moved_any() || pass.failed().is_some() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
    // Let go now rather than when the server notices the closed connection, so a standby
    // takes over at once.
    let _ = tokio::time::timeout(Duration::from_secs(2), relay.release()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_no_retry_can_fix_are_permanent() {
        for code in [
            RDKafkaErrorCode::MessageSizeTooLarge,
            RDKafkaErrorCode::InvalidTopic,
            RDKafkaErrorCode::InvalidRecord,
        ] {
            assert!(
                is_permanent(&KafkaError::MessageProduction(code)),
                "{code:?}"
            );
        }
        for code in [
            RDKafkaErrorCode::InvalidMessage,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::NotLeaderForPartition,
        ] {
            assert!(
                !is_permanent(&KafkaError::MessageProduction(code)),
                "{code:?}"
            );
        }
    }
}
