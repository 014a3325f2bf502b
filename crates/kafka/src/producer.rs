//! The producer.
//!
//! Idempotent (`enable.idempotence=true`, which implies `acks=all` and ordered retries), so a
//! retried send never duplicates or reorders a message within a partition. [`Producer::send`]
//! resolves only once the broker acknowledged the message, which is what lets the outbox relay
//! delete a row and ingest report a delivery as relayed.
//!
//! Failure policy: a send that the broker cannot take within `message.timeout.ms` fails to the
//! caller, which keeps the message (in its outbox) and tries again later; nothing is dropped.

use std::time::Duration;

use attrsync_config::KafkaConfig;
use attrsync_proto::v1::Envelope;
use prost::Message;
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};

use crate::Result;

/// A cheap-to-clone handle on one idempotent producer.
#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer,
    config: KafkaConfig,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("bootstrap", &self.config.bootstrap)
            .finish()
    }
}

impl Producer {
    pub fn new(config: &KafkaConfig) -> Result<Self> {
        let inner: FutureProducer = crate::base_client_config(config)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "1")
            .set("message.timeout.ms", "30000")
            // Kafka's default broker and topic limit; larger messages are refused locally and
            // the outbox relay sets them aside (see `relay::is_permanent`).
            .set("message.max.bytes", "1000000")
            .create()?;
        Ok(Self {
            inner,
            config: config.clone(),
        })
    }

    /// The full name of `topic` for this deployment (with its prefix).
    pub fn topic(&self, topic: &str) -> String {
        self.config.topic(topic)
    }

    /// Sends raw bytes to an already-prefixed topic and waits for the acknowledgement.
    pub async fn send_raw(
        &self,
        full_topic: &str,
        key: Option<&str>,
        payload: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(i32, i64)> {
        let mut owned = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in headers {
            owned = owned.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let mut record = FutureRecord::<str, [u8]>::to(full_topic)
            .payload(payload)
            .headers(owned);
        if let Some(key) = key {
            record = record.key(key);
        }
        let delivery = self.inner.send(record, Duration::from_secs(30)).await;
        delivery
            .map(|d| (d.partition, d.offset))
            .map_err(|(e, _)| e.into())
    }

    /// Publishes an envelope to `topic` (un-prefixed), keyed by its workspace.
    pub async fn publish(&self, topic: &str, envelope: &Envelope) -> Result<(i32, i64)> {
        let key = envelope.workspace_id.to_string();
        let headers = trace_headers(envelope);
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.send_raw(
            &self.topic(topic),
            Some(&key),
            &envelope.encode_to_vec(),
            &headers,
        )
        .await
    }

    /// Waits until every queued message was delivered (at shutdown).
    pub fn flush(&self, timeout: Duration) {
        use rdkafka::producer::Producer as _;
        let _ = self.inner.flush(timeout);
    }
}

/// Kafka headers carrying the envelope's trace context and identity, for tools that do not
/// decode protobuf.
pub fn trace_headers(envelope: &Envelope) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = envelope
        .trace_context
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    headers.push(("event-id".to_owned(), envelope.event_id.clone()));
    headers.push(("producer".to_owned(), envelope.producer.clone()));
    headers
}
