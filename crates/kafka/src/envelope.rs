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
