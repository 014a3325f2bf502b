//! Reads a test topic from the beginning, outside any service's consumer group.

use std::time::Duration;

use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{Consumer, StreamConsumer},
};

/// One raw message.
#[derive(Debug, Clone)]
pub(crate) struct Raw {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// Every message of partition 0 of `topic` (tests use one partition) until `stop` says the
/// last one read is the last wanted, or `timeout` passes.
pub(crate) async fn read_until(
    topic: &str,
    timeout: Duration,
    stop: impl Fn(&[Raw]) -> bool,
) -> anyhow::Result<Vec<Raw>> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", attrsync_e2e::kafka_bootstrap())
        .set("group.id", format!("reader-{}", ulid::Ulid::new()))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while !stop(&seen) {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            break;
        }
        match tokio::time::timeout(remaining, consumer.recv()).await {
            Ok(Ok(m)) => seen.push(Raw {
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
            }),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => break,
        }
    }
    Ok(seen)
}

/// The `data.id` of an attribute webhook message (a barrier tests read up to).
pub(crate) fn webhook_data_id(raw: &Raw) -> Option<i64> {
    let envelope = attrsync_kafka::envelope::decode(&raw.payload).ok()?;
    let Some(attrsync_proto::Payload::FyleAttributeWebhook(hook)) = envelope.payload else {
        return None;
    };
    let data: serde_json::Value = serde_json::from_str(&hook.data_json).ok()?;
    data.get("id")?.as_i64()
}

/// The `ConnectionStatusChanged` events of `workspace_id` on `stack`'s topic, in order, read
/// until `stop` says the list is complete (or `timeout` passes).
pub(crate) async fn connection_events(
    stack: &attrsync_e2e::TestStack,
    workspace_id: i64,
    timeout: Duration,
    stop: impl Fn(&[attrsync_proto::v1::ConnectionStatusChanged]) -> bool,
) -> Vec<attrsync_proto::v1::ConnectionStatusChanged> {
    let decode = |raw: &Raw| {
        let envelope = attrsync_kafka::envelope::decode(&raw.payload).ok()?;
        match envelope.payload {
            Some(attrsync_proto::Payload::ConnectionStatusChanged(e))
                if envelope.workspace_id == workspace_id =>
            {
                Some(e)
            }
            _ => None,
        }
    };
    let topic = stack.topic(attrsync_kafka::topics::CONNECTION_STATUS);
    let raws = read_until(&topic, timeout, |seen| {
        stop(&seen.iter().filter_map(decode).collect::<Vec<_>>())
    })
    .await
    .expect("reading the connection status topic");
    raws.iter().filter_map(decode).collect()
}

/// `(previous, current)` of each event, as the enum's names (for readable assertions). The
/// relay delivers at least once: a redelivered event (the same transition at the same
/// `changed_at`) counts once, a second announcement of a change does not.
pub(crate) fn connection_transitions(
    events: &[attrsync_proto::v1::ConnectionStatusChanged],
) -> Vec<(&'static str, &'static str)> {
    use attrsync_proto::v1::ConnectionState;
    let name = |state: i32| match ConnectionState::try_from(state) {
        Ok(ConnectionState::Connected) => "CONNECTED",
        Ok(ConnectionState::Broken) => "BROKEN",
        _ => "UNSPECIFIED",
    };
    let mut seen = std::collections::HashSet::new();
    events
        .iter()
        .filter(|e| seen.insert((e.previous, e.current, e.changed_at)))
        .map(|e| (name(e.previous), name(e.current)))
        .collect()
}

/// The connection events of `workspace_id` up to its reconnection (the first event from BROKEN):
/// the events of a workspace share a partition, so a repeat of an earlier one would come before.
pub(crate) async fn connection_events_until_reconnected(
    stack: &attrsync_e2e::TestStack,
    workspace_id: i64,
    timeout: Duration,
) -> Vec<attrsync_proto::v1::ConnectionStatusChanged> {
    use attrsync_proto::v1::ConnectionState;
    connection_events(stack, workspace_id, timeout, |seen| {
        seen.iter()
            .any(|e| e.previous == ConnectionState::Broken as i32)
    })
    .await
}

/// Asserts a connected → broken → reconnected history: exactly those transitions (after the
/// first connection), every event naming `source` and `account`, the refusal naming `why`.
pub(crate) fn assert_broken_then_reconnected(
    events: &[attrsync_proto::v1::ConnectionStatusChanged],
    source: &str,
    account: &str,
    why: &str,
) {
    use attrsync_proto::v1::ConnectionState;
    assert_eq!(
        connection_transitions(events),
        [
            ("UNSPECIFIED", "CONNECTED"),
            ("CONNECTED", "BROKEN"),
            ("BROKEN", "CONNECTED")
        ],
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .all(|e| e.source == source && e.account_id == account),
        "{events:?}"
    );
    let broken = events
        .iter()
        .find(|e| e.current == ConnectionState::Broken as i32)
        .expect("a BROKEN event");
    assert!(broken.reason.contains(why), "{events:?}");
}
