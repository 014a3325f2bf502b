//! The outbox relay: publishes what a service committed to its outbox.
//!
//! It wakes when the service says it enqueued something ([`RelayHandle::wake`]) and otherwise
//! polls every `idle_poll`, so messages left by a crashed process or another replica are
//! published too. A failed pass (Kafka or the database down) leaves the rows in place and is
//! retried with backoff; see [`attrsync_db::outbox`] for ordering and delivery guarantees.

use std::{sync::Arc, time::Duration};

use attrsync_db::{
    Pool,
    outbox::{self, OutboxMessage, OutboxPublisher, Published},
};
use rdkafka::{error::KafkaError, types::RDKafkaErrorCode};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::{Producer, consumer::retry_delay, envelope};

/// Wakes the relay after a commit that enqueued messages.
#[derive(Debug, Clone, Default)]
pub struct RelayHandle {
    notify: Arc<Notify>,
}

impl RelayHandle {
    pub fn wake(&self) {
        self.notify.notify_one();
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
            let headers = envelope::decode(&m.payload)
                .map(|e| crate::producer::trace_headers(&e))
                .unwrap_or_default();
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            match self
                .producer
                .send_raw(&m.topic, m.message_key.as_deref(), &m.payload, &headers)
                .await
            {
                Ok(_) => Published::Acknowledged,
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

/// Errors no retry can fix: the message is too large or malformed, or the topic name invalid.
pub fn is_permanent(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidTopic
        )
    )
}

/// Runs [`run`] on a task of `tasks`, polling every 500 ms when not woken.
pub fn spawn(
    tasks: &mut tokio::task::JoinSet<()>,
    pool: Pool,
    producer: Producer,
    schema: &str,
    handle: RelayHandle,
    shutdown: CancellationToken,
) {
    tasks.spawn(run(
        pool,
        producer,
        schema.to_owned(),
        handle,
        Duration::from_millis(500),
        shutdown,
    ));
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
    let mut failures = 0;
    loop {
        match outbox::relay_once(&pool, lock_key, 500, &publisher).await {
            Ok(pass) if pass.moved_any() => {
                failures = 0;
                continue;
            }
            Ok(_) => failures = 0,
            Err(e) => {
                failures += 1;
                warn!(error = %e, failures, "outbox relay pass failed; messages stay queued");
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
            () = tokio::time::sleep(wait) => {}
        }
    }
    // Publish what was committed just before shutdown, briefly; anything left waits for the
    // next start (or another replica).
    let drain = async {
        while let Ok(pass) = outbox::relay_once(&pool, lock_key, 500, &publisher).await {
            if !pass.moved_any() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
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
