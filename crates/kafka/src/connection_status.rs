//! Announcing that a workspace's credentials with a source started or stopped working, written
//! once for the services that hold credentials (fyle-sync, qbo-sync).
//!
//! Each service keeps the state in its own table (fyle-sync: `fyle_connections.status`,
//! qbo-sync: `qbo_credentials.status`) and decides when it changes; this module turns a change
//! into `ConnectionStatusChanged` events on `sync.connections.v1`, enqueued through the
//! service's outbox **in the caller's transaction**, so the stored state and its announcement
//! are committed together or not at all, and the relay delivers each at least once (consumers
//! key on the workspace and `changed_at`).
//!
//! A change is announced only when the state differs ([`announces`], pure): reconnecting a
//! working connection or refusing an already broken one publishes nothing, so a consumer sees
//! one event per transition however many calls found it. The previous state is the caller's
//! to know per workspace: fyle-sync's is the workspace's stored status; qbo-sync's company is
//! shared by workspaces, so it keeps the state last announced to each.
//!
//! Failure policy: a database error fails the caller's transaction (nothing stored, nothing
//! announced); the caller keeps its own policy for that case.

use attrsync_config::KafkaConfig;
use attrsync_db::outbox;
use attrsync_proto::v1::{ConnectionState, ConnectionStatusChanged};
use chrono::{DateTime, Utc};
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;

use crate::{
    envelope,
    relay::RelayHandle,
    topics::{self, TopicPayload as _},
};

/// A stored connection status as the producer writes it, in the event's terms (pure): its
/// `CONNECTED` is connected, any other stored status (fyle-sync's `BROKEN`, qbo-sync's
/// `EXPIRED`) is broken, and no row is unspecified.
pub fn state_of(stored: Option<&str>) -> ConnectionState {
    match stored {
        None => ConnectionState::Unspecified,
        Some("CONNECTED") => ConnectionState::Connected,
        Some(_) => ConnectionState::Broken,
    }
}

/// Whether going from `previous` to `current` is a change worth an event (pure).
pub fn announces(previous: ConnectionState, current: ConnectionState) -> bool {
    previous != current && current != ConnectionState::Unspecified
}

/// A change of one connection's state, as its producer found it.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    /// The Fyle org or the QBO company.
    pub account_id: &'a str,
    pub previous: ConnectionState,
    pub current: ConnectionState,
    /// The source's refusal for a broken connection; never a secret. Empty otherwise.
    pub reason: &'a str,
    pub at: DateTime<Utc>,
}

/// A service's announcer: which source its connections are with, and where their changes go.
#[derive(Debug, Clone)]
pub struct Announcer {
    source: &'static str,
    producer: &'static str,
    kafka: KafkaConfig,
    relay: RelayHandle,
}

impl Announcer {
    /// `source` is "fyle" or "qbo"; `producer` the service's name in the envelopes.
    pub fn new(
        source: &'static str,
        producer: &'static str,
        kafka: KafkaConfig,
        relay: RelayHandle,
    ) -> Self {
        Self {
            source,
            producer,
            kafka,
            relay,
        }
    }

    /// The event (pure).
    pub fn event(&self, change: &Change<'_>) -> ConnectionStatusChanged {
        ConnectionStatusChanged {
            source: self.source.to_owned(),
            previous: change.previous as i32,
            current: change.current as i32,
            reason: change.reason.to_owned(),
            changed_at: Some(attrsync_proto::time::to_proto(change.at)),
            account_id: change.account_id.to_owned(),
        }
    }

    /// Enqueues `change` for `workspace_id` in the caller's transaction, when it is a change of
    /// state ([`announces`]). Returns whether it did; once the transaction committed,
    /// [`Announcer::wake`] sends it without waiting for the relay's next poll.
    pub async fn announce(
        &self,
        conn: &mut AsyncPgConnection,
        workspace_id: i64,
        change: &Change<'_>,
    ) -> QueryResult<bool> {
        if !announces(change.previous, change.current) {
            return Ok(false);
        }
        let envelope = envelope::new(
            workspace_id,
            self.producer,
            attrsync_proto::time::to_proto(change.at),
            self.event(change).into_payload(),
        );
        let topic = self.kafka.topic(topics::CONNECTION_STATUS.name());
        outbox::enqueue(conn, &[envelope::outbox_row(topic, &envelope)]).await?;
        Ok(true)
    }

    /// Wakes the service's outbox relay; call it after the transaction that announced committed.
    pub fn wake(&self) {
        self.relay.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_status_reads_as_connected_broken_or_unspecified() {
        assert_eq!(state_of(None), ConnectionState::Unspecified);
        assert_eq!(state_of(Some("CONNECTED")), ConnectionState::Connected);
        assert_eq!(state_of(Some("BROKEN")), ConnectionState::Broken);
        assert_eq!(state_of(Some("EXPIRED")), ConnectionState::Broken);
    }

    #[test]
    fn only_a_change_of_state_is_announced() {
        use ConnectionState::{Broken, Connected, Unspecified};
        assert!(announces(Unspecified, Connected));
        assert!(announces(Connected, Broken));
        assert!(announces(Broken, Connected));
        assert!(!announces(Connected, Connected));
        assert!(!announces(Broken, Broken));
        assert!(!announces(Connected, Unspecified));
    }
}
