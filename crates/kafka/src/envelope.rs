//! Building and reading envelopes.

use attrsync_proto::{Payload, time, v1::Envelope};
use prost::Message;

/// Schema version of every payload in this build.
pub const SCHEMA_VERSION: u32 = 1;

/// A new envelope for `payload`, stamped now, carrying the current span's trace context.
pub fn new(
    workspace_id: i64,
    producer: &str,
    occurred_at: time::Timestamp,
    payload: Payload,
) -> Envelope {
    Envelope {
        event_id: ulid::Ulid::new().to_string(),
        workspace_id,
        occurred_at: Some(occurred_at),
        produced_at: Some(time::now()),
        producer: producer.to_owned(),
        schema_version: SCHEMA_VERSION,
        trace_context: attrsync_telemetry::inject(&tracing::Span::current()),
        payload: Some(payload),
    }
}

/// Decodes an envelope from Kafka message bytes.
pub fn decode(bytes: &[u8]) -> Result<Envelope, prost::DecodeError> {
    Envelope::decode(bytes)
}

/// The outbox row that publishes `envelope` to `full_topic`, keyed by its workspace, with its
/// trace context and identity as Kafka headers.
pub fn outbox_row(
    full_topic: String,
    envelope: &Envelope,
) -> attrsync_db::outbox::NewOutboxMessage {
    let headers = crate::producer::trace_headers(envelope)
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    attrsync_db::outbox::NewOutboxMessage {
        topic: full_topic,
        message_key: Some(envelope.workspace_id.to_string()),
        payload: envelope.encode_to_vec(),
        headers: serde_json::Value::Object(headers),
    }
}
