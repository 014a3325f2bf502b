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

/// The largest change event a service publishes in one message (well under Kafka's 1 MB
/// default `message.max.bytes`, leaving room for the envelope and headers).
pub const MAX_CHANGE_EVENT_BYTES: usize = 256 * 1024;

/// Splits `items` — the repeated field of one event — into groups whose encoding stays under
/// `max_bytes` (an item larger than that travels alone). Order is kept. Pure.
pub fn chunk_by_encoded_len<M: Message>(items: Vec<M>, max_bytes: usize) -> Vec<Vec<M>> {
    let mut chunks: Vec<Vec<M>> = Vec::new();
    let mut size = 0;
    for item in items {
        // Field tag and length prefix of a repeated message: at most 1 + 10 bytes.
        let len = item.encoded_len() + 11;
        match chunks.last_mut() {
            Some(chunk) if size + len <= max_bytes => {
                chunk.push(item);
                size += len;
            }
            _ => {
                chunks.push(vec![item]);
                size = len;
            }
        }
    }
    chunks
}

#[cfg(test)]
mod tests {
    use attrsync_proto::v1::DestinationAttributeChange;

    use super::*;

    fn change(value_len: usize) -> DestinationAttributeChange {
        DestinationAttributeChange {
            value: "v".repeat(value_len),
            ..Default::default()
        }
    }

    #[test]
    fn chunks_stay_under_the_limit_and_keep_order() {
        let items: Vec<_> = (0..100).map(|i| change(100 + i)).collect();
        let chunks = chunk_by_encoded_len(items.clone(), 2_000);
        assert!(chunks.len() > 1);
        for chunk in &chunks {
            let size: usize = chunk.iter().map(|c| c.encoded_len() + 11).sum();
            assert!(size <= 2_000, "chunk of {size} bytes");
        }
        let flattened: Vec<_> = chunks.into_iter().flatten().collect();
        assert_eq!(flattened, items);
    }

    #[test]
    fn an_item_larger_than_the_limit_travels_alone() {
        let chunks = chunk_by_encoded_len(vec![change(10), change(5_000), change(10)], 1_000);
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
    }
}
