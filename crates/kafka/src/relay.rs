//! The outbox relay: publishes what a service committed to its outbox.
//!
//! It wakes when the service says it enqueued something ([`RelayHandle::wake`]) and otherwise
//! polls every `idle_poll`, so messages left by a crashed process or another replica are
//! published too. A failed pass (Kafka or the database down) leaves the rows in place and is
//! retried with backoff; see [`attrsync_db::outbox`] for ordering and delivery guarantees.

use std::{sync::Arc, time::Duration};

use attrsync_db::{
    Pool,
    outbox::{self, OutboxMessage, OutboxPublisher, RelayPass},
};
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
    async fn publish(&self, messages: &[OutboxMessage]) -> Result<(), String> {
        let sends = messages.iter().map(|m| async move {
            let headers = envelope::decode(&m.payload)
                .map(|e| crate::producer::trace_headers(&e))
                .unwrap_or_default();
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            self.producer
                .send_raw(&m.topic, m.message_key.as_deref(), &m.payload, &headers)
                .await
        });
        // The idempotent producer keeps per-partition order for concurrent sends.
        for result in futures::future::join_all(sends).await {
            result.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
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
            Ok(RelayPass::Relayed(n)) if n > 0 => {
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
}
