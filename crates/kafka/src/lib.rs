//! Kafka for the services.
//!
//! - [`topics`]: every topic, typed by the payload it carries, and how it is created.
//! - [`envelope`]: building the protobuf envelope every message carries.
//! - [`producer`]: an idempotent producer (`acks=all`) that returns only after the broker
//!   acknowledged a message.
//! - [`consumer`]: the at-least-once consumer loop: offsets are stored only after the handler
//!   (and its database transaction) succeeded, in order per partition, committed on revoke and
//!   on shutdown; failures are retried with backoff, then dead-lettered to `<topic>.dlq`.
//! - [`handler`]: idempotent handlers — a service writes only its effect; payload extraction,
//!   workspace lookup, the transaction with `processed_events`, error classification and the
//!   relay wake-up are written once.
//! - [`relay`]: the outbox relay, which publishes what services committed to their outbox.
//! - [`workspaces`]: a service's own projection of the workspace registry, fed by the
//!   compacted `settings.workspaces.v1`.
//! - [`connection_status`]: a change of a workspace's credentials with a source (connected,
//!   broken) goes out on `sync.connections.v1` through the outbox in the transaction that
//!   stores it.
//! - [`webhook_health`]: a sync service's webhook health, persisted — a round's window steps
//!   the workspace's state, and a change goes out on `sync.webhook-health.v1` through the
//!   outbox in the same transaction.

pub mod connection_status;
pub mod consumer;
pub mod envelope;
pub mod handler;
pub mod producer;
pub mod relay;
pub mod topics;
pub mod webhook_health;
pub mod workspaces;

pub use consumer::{ConsumerProgress, Handler, HandlerError, Incoming};
pub use producer::Producer;

/// A Kafka operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("creating topic `{topic}` failed: {reason}")]
    CreateTopic { topic: String, reason: String },
}

pub type Result<T, E = KafkaError> = std::result::Result<T, E>;

/// Settings shared by every client of one service.
pub(crate) fn base_client_config(config: &attrsync_config::KafkaConfig) -> rdkafka::ClientConfig {
    let mut client = rdkafka::ClientConfig::new();
    client
        .set("bootstrap.servers", &config.bootstrap)
        .set("client.id", &config.group_id)
        // Brokers come and go in tests and rollouts; keep reconnect attempts quick.
        .set("reconnect.backoff.max.ms", "2000")
        .set("socket.keepalive.enable", "true")
        // Small requests go out at once instead of waiting behind Nagle's algorithm for the
        // broker's delayed ACK (tens of ms per relay pass otherwise).
        .set("socket.nagle.disable", "true");
    client
}
