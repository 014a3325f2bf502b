//! Idempotent handlers: a service writes only its effect.
//!
//! A service's consumer implements [`EffectHandler`] for the payload of one typed topic;
//! [`Idempotent`] turns it into the consumer's [`Handler`]. For each message it:
//!
//! 1. takes the topic's payload variant out of the envelope (another variant is poison);
//! 2. finds the message's workspace — the service's projection, else mapping over gRPC (see
//!    [`WorkspaceDirectory`]). A workspace mapping does not know, or one that was deleted, is
//!    counted (`consumer_messages_skipped_total`) and skipped; mapping unreachable → wait;
//! 3. opens one transaction (bounded by `database.query_timeout`) that records the envelope
//!    id in `processed_events` — a redelivery finds it and changes nothing — and runs the
//!    effect, which may publish through the outbox ([`Tx::publish`]) in the same transaction:
//!    what it publishes is written to the outbox by one statement just before the commit (a
//!    batch's, in statements of at most 4 MiB of payload, and between its messages whenever
//!    4 MiB have gathered — [`Tx::flush_if_large`] — so neither memory nor a statement grows
//!    with the batch);
//! 4. after the commit, wakes the relay if anything was published.
//!
//! Consecutive messages of a partition are applied in **one** transaction when they can be
//! (one commit instead of one per message, the workspaces looked up by one query, the
//! envelope ids recorded by one statement, the new messages handed to the effect together
//! through [`EffectHandler::apply_all`], so an effect can write them set-based, everything
//! published written to the outbox at the end); anything unusual falls back to the steps
//! above, message by message, so the policy below holds for each. Such a fall-back is counted
//! (`consumer_batches_split_total{topic, reason}`).
//!
//! Delivery guarantee: at-least-once transport, exactly-once effect per envelope id. Ids are
//! kept for `retention.processed_events`, which must exceed the consumed topics' retention.
//!
//! Failure policy: database errors are classified by [`attrsync_db::classify`]: retryable
//! ones (outages, timeouts, anything unknown) make the consumer wait without limit with only
//! this message's partition paused; permanent ones (integrity violations) are `Failed`, retried
//! a few times (a race may clear) and then dead-lettered. An effect that finds the message
//! itself unusable returns [`HandlerError::Poison`].

use std::{
    collections::{HashMap, HashSet},
    future::Future,
};

use attrsync_config::KafkaConfig;
use attrsync_db::{Failure, Pool, outbox};
use attrsync_proto::time;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::{
    Handler, HandlerError, Incoming,
    consumer::{BatchOutcome, handle_each},
    envelope,
    relay::RelayHandle,
    topics::{Topic, TopicPayload},
    workspaces::{Lookup, ProjectedWorkspace, WorkspaceDirectory},
};

diesel::table! {
    processed_events (event_id) {
        event_id -> Text,
        processed_at -> Timestamptz,
    }
}

/// One message of a typed topic, with its workspace.
#[derive(Debug)]
pub struct Event<'a, P> {
    pub event_id: &'a str,
    pub workspace: &'a ProjectedWorkspace,
    /// When the producer says the fact happened (e.g. when ingest received the webhook).
    pub occurred_at: Option<DateTime<Utc>>,
    pub payload: P,
}

/// Why an effect did not apply.
#[derive(Debug)]
pub enum EffectError {
    /// A database error, classified by the wrapper.
    Db(diesel::result::Error),
    /// The effect's own verdict.
    Handler(HandlerError),
}

impl From<diesel::result::Error> for EffectError {
    fn from(e: diesel::result::Error) -> Self {
        EffectError::Db(e)
    }
}

impl From<HandlerError> for EffectError {
    fn from(e: HandlerError) -> Self {
        EffectError::Handler(e)
    }
}

/// The open transaction an effect runs in, and the outbox it may publish through.
pub struct Tx<'c> {
    pub conn: &'c mut AsyncPgConnection,
    kafka: &'c KafkaConfig,
    producer: &'static str,
    /// Published in this transaction, in order; written to the outbox before it commits.
    outbox: &'c mut Vec<outbox::NewOutboxMessage>,
    /// How many were already written to the outbox by [`Tx::flush_if_large`].
    flushed: usize,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("producer", &self.producer)
            .field("published", &(self.flushed + self.outbox.len()))
            .finish_non_exhaustive()
    }
}

impl<'c> Tx<'c> {
    /// Publishes `payload` on `topic` for `workspace_id` if, and only if, this transaction
    /// commits: the wrapper writes it to the outbox, with everything else the transaction
    /// published, in one statement before the commit.
    pub fn publish<P: TopicPayload>(&mut self, topic: Topic<P>, workspace_id: i64, payload: P) {
        let envelope = envelope::new(
            workspace_id,
            self.producer,
            time::now(),
            payload.into_payload(),
        );
        self.outbox.push(envelope::outbox_row(
            self.kafka.topic(topic.name()),
            &envelope,
        ));
    }

    /// Writes what this transaction has published so far to the outbox once it holds
    /// [`OUTBOX_FLUSH_BYTES`] of payload, so a batch of messages that each publish a lot stays
    /// bounded in memory. Called between messages; still committed with the transaction.
    pub async fn flush_if_large(&mut self) -> QueryResult<()> {
        let bytes: usize = self.outbox.iter().map(|row| row.payload.len()).sum();
        if bytes >= OUTBOX_FLUSH_BYTES {
            outbox::enqueue(self.conn, self.outbox).await?;
            self.flushed += self.outbox.len();
            self.outbox.clear();
        }
        Ok(())
    }
}

/// A service's effect for the messages of one typed topic.
pub trait EffectHandler: Send + Sync + 'static {
    type Payload: TopicPayload;

    /// Applies one message inside the wrapper's transaction. Must be deterministic in what it
    /// writes for a given message and stored state; it runs at most once per envelope id.
    fn apply(
        &self,
        tx: &mut Tx<'_>,
        event: &Event<'_, Self::Payload>,
    ) -> impl Future<Output = Result<(), EffectError>> + Send;

    /// Applies consecutive messages of one partition, in order, inside one transaction: the
    /// same effect as [`apply`](Self::apply) on each in turn (the default does exactly that,
    /// with [`Tx::flush_if_large`] between them). An effect overrides it to write a batch in
    /// fewer statements; an error fails the whole batch, which the wrapper then retries in
    /// smaller pieces.
    fn apply_all(
        &self,
        tx: &mut Tx<'_>,
        events: &[Event<'_, Self::Payload>],
    ) -> impl Future<Output = Result<(), EffectError>> + Send {
        async move {
            for event in events {
                self.apply(tx, event).await?;
                tx.flush_if_large().await?;
            }
            Ok(())
        }
    }
}

/// The consumer-facing [`Handler`] of an [`EffectHandler`]: payload, workspace, transaction,
/// `processed_events`, error classification and relay wake-up, written once.
pub struct Idempotent<H> {
    effect: H,
    pool: Pool,
    directory: WorkspaceDirectory,
    kafka: KafkaConfig,
    relay: RelayHandle,
    producer: &'static str,
    query_timeout: std::time::Duration,
}

impl<H> std::fmt::Debug for Idempotent<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotent")
            .field("producer", &self.producer)
            .finish_non_exhaustive()
    }
}

/// What [`Idempotent`] needs from the service around it.
#[derive(Clone)]
pub struct Services {
    pub pool: Pool,
    pub directory: WorkspaceDirectory,
    pub kafka: KafkaConfig,
    pub relay: RelayHandle,
    /// The producing service's name, stamped on published envelopes.
    pub producer: &'static str,
    pub query_timeout: std::time::Duration,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("producer", &self.producer)
            .finish_non_exhaustive()
    }
}

impl<H: EffectHandler> Idempotent<H> {
    pub fn new(effect: H, services: Services) -> Self {
        Self {
            effect,
            pool: services.pool,
            directory: services.directory,
            kafka: services.kafka,
            relay: services.relay,
            producer: services.producer,
            query_timeout: services.query_timeout,
        }
    }
}

/// A batch writes what it published to the outbox in statements of at most about this many
/// payload bytes, so no one statement grows with the batch.
const OUTBOX_FLUSH_BYTES: usize = 4 * 1024 * 1024;

/// `rows` in order, cut into runs of at most `limit` payload bytes (a longer row alone).
fn chunk_by_payload_bytes(
    rows: &[outbox::NewOutboxMessage],
    limit: usize,
) -> impl Iterator<Item = &[outbox::NewOutboxMessage]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let end = rest
            .iter()
            .position(|row| {
                bytes += row.payload.len();
                bytes > limit
            })
            .map_or(rest.len(), |at| at.max(1));
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
}

fn db_failure(e: &diesel::result::Error) -> HandlerError {
    // The server's text goes to logs through the consumer's warning, never anywhere else.
    match attrsync_db::classify(e) {
        Failure::Retryable => HandlerError::Unavailable(format!("database: {e}")),
        Failure::Permanent => HandlerError::Failed(format!("database refused the effect: {e}")),
    }
}

impl<H: EffectHandler> Handler for Idempotent<H> {
    async fn handle_batch(&self, messages: &[Incoming<'_>]) -> BatchOutcome {
        self.apply_batch(messages).await
    }

    async fn handle(&self, message: &Incoming<'_>) -> Result<(), HandlerError> {
        let payload = message
            .envelope
            .payload
            .clone()
            .and_then(H::Payload::from_payload)
            .ok_or_else(|| {
                HandlerError::Poison(format!("expected a {} payload", H::Payload::VARIANT))
            })?;
        let workspace_id = message.envelope.workspace_id;
        let workspace = match self.directory.lookup(workspace_id).await {
            Lookup::Found(workspace) if !workspace.deleted => workspace,
            Lookup::Found(_) => {
                skipped(message, "deleted workspace");
                return Ok(());
            }
            Lookup::Unknown => {
                skipped(message, "unknown workspace");
                return Ok(());
            }
            Lookup::Unavailable(reason) => return Err(HandlerError::Unavailable(reason)),
        };
        let event = Event {
            event_id: &message.envelope.event_id,
            workspace: &workspace,
            occurred_at: message
                .envelope
                .occurred_at
                .as_ref()
                .and_then(time::from_proto),
            payload,
        };
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| HandlerError::Unavailable(format!("database pool: {e}")))?;
        let transaction = conn.transaction::<usize, EffectError, _>(async |conn| {
            let first_time = diesel::insert_into(processed_events::table)
                .values(processed_events::event_id.eq(event.event_id))
                .on_conflict_do_nothing()
                .execute(conn)
                .await?;
            if first_time == 0 {
                tracing::info!("duplicate delivery: already applied");
                return Ok(0);
            }
            let mut published = Vec::new();
            let mut tx = self.tx(conn, &mut published);
            self.effect.apply(&mut tx, &event).await?;
            outbox::enqueue(conn, &published).await?;
            Ok(published.len())
        });
        let published = match tokio::time::timeout(self.query_timeout, transaction).await {
            Err(_) => {
                return Err(HandlerError::Unavailable(format!(
                    "database did not answer within {:?}",
                    self.query_timeout
                )));
            }
            Ok(Err(EffectError::Db(e))) => return Err(db_failure(&e)),
            Ok(Err(EffectError::Handler(e))) => return Err(e),
            Ok(Ok(published)) => published,
        };
        if published > 0 {
            self.relay.wake();
        }
        Ok(())
    }
}

impl<H: EffectHandler> Idempotent<H> {
    /// The effect's view of an open transaction, publishing into `outbox`.
    fn tx<'c>(
        &'c self,
        conn: &'c mut AsyncPgConnection,
        outbox: &'c mut Vec<outbox::NewOutboxMessage>,
    ) -> Tx<'c> {
        Tx {
            conn,
            kafka: &self.kafka,
            producer: self.producer,
            outbox,
            flushed: 0,
        }
    }

    /// Several messages of one partition in one transaction: one commit (one fsync) instead
    /// of one per message, which is what bounds a durable consumer's rate. When the batch
    /// cannot commit whole — a payload of the wrong kind, a workspace that is not plainly live
    /// and known, any error inside the transaction — it is split in halves and each retried
    /// the same way, down to single messages, which take the single-message path: one poison
    /// message costs a few extra transactions, and every message still meets exactly the
    /// single-message policy.
    fn apply_batch<'a>(
        &'a self,
        messages: &'a [Incoming<'a>],
    ) -> std::pin::Pin<Box<dyn Future<Output = BatchOutcome> + Send + 'a>> {
        Box::pin(async move {
            if messages.len() > 1 && self.commit_together(messages).await {
                return BatchOutcome {
                    applied: messages.len(),
                    error: None,
                };
            }
            if messages.len() <= 1 {
                return handle_each(self, messages).await;
            }
            let (left, right) = messages.split_at(messages.len() / 2);
            let first = self.apply_batch(left).await;
            if first.error.is_some() || first.applied < left.len() {
                return first;
            }
            let second = self.apply_batch(right).await;
            BatchOutcome {
                applied: left.len() + second.applied,
                error: second.error,
            }
        })
    }

    /// Applies every message in one transaction; false (and nothing written) if it could not.
    /// The batch's workspaces are looked up together (one projection query; mapping only for
    /// those the projection lacks), and the batch's envelope ids are recorded
    /// in `processed_events` by one statement (its `RETURNING` says which are new; an id seen
    /// twice in the batch is applied once).
    async fn commit_together(&self, messages: &[Incoming<'_>]) -> bool {
        let mut workspaces = Vec::with_capacity(messages.len());
        let mut payloads = Vec::with_capacity(messages.len());
        let mut ids: Vec<i64> = messages.iter().map(|m| m.envelope.workspace_id).collect();
        ids.sort_unstable();
        ids.dedup();
        let looked_up: HashMap<i64, ProjectedWorkspace> = self
            .directory
            .lookup_many(&ids)
            .await
            .into_iter()
            .filter_map(|(id, lookup)| lookup.live().map(|workspace| (id, workspace)))
            .collect();
        for message in messages {
            let payload = message
                .envelope
                .payload
                .clone()
                .and_then(H::Payload::from_payload);
            let workspace = looked_up.get(&message.envelope.workspace_id).cloned();
            match (payload, workspace) {
                (Some(payload), Some(workspace)) => {
                    payloads.push(payload);
                    workspaces.push(workspace);
                }
                _ => {
                    batch_split(messages, "a message for the single path");
                    return false;
                }
            }
        }
        let Ok(mut conn) = self.pool.get().await else {
            batch_split(messages, "database pool");
            return false;
        };
        let transaction = conn.transaction::<usize, EffectError, _>(async |conn| {
            let ids: Vec<_> = messages
                .iter()
                .map(|m| processed_events::event_id.eq(&m.envelope.event_id))
                .collect();
            let mut first_time: HashSet<String> = diesel::insert_into(processed_events::table)
                .values(&ids)
                .on_conflict_do_nothing()
                .returning(processed_events::event_id)
                .load::<String>(conn)
                .await?
                .into_iter()
                .collect();
            let mut events = Vec::with_capacity(messages.len());
            for ((message, payload), workspace) in messages.iter().zip(payloads).zip(&workspaces) {
                // Taken out once kept: a second copy of an id in the batch is a redelivery.
                if !first_time.remove(&message.envelope.event_id) {
                    continue;
                }
                events.push(Event {
                    event_id: &message.envelope.event_id,
                    workspace,
                    occurred_at: message
                        .envelope
                        .occurred_at
                        .as_ref()
                        .and_then(time::from_proto),
                    payload,
                });
            }
            let mut published = Vec::new();
            let mut tx = self.tx(conn, &mut published);
            self.effect.apply_all(&mut tx, &events).await?;
            let flushed = tx.flushed;
            for rows in chunk_by_payload_bytes(&published, OUTBOX_FLUSH_BYTES) {
                outbox::enqueue(conn, rows).await?;
            }
            Ok(flushed + published.len())
        });
        match tokio::time::timeout(self.query_timeout, transaction).await {
            Ok(Ok(published)) => {
                if published > 0 {
                    self.relay.wake();
                }
                true
            }
            Ok(Err(e)) => {
                let error = match e {
                    EffectError::Db(e) => db_failure(&e).to_string(),
                    EffectError::Handler(e) => e.to_string(),
                };
                tracing::warn!(error, "batch transaction failed; retried in halves");
                batch_split(messages, "the batch failed");
                false
            }
            Err(_) => {
                batch_split(messages, "database timeout");
                false
            }
        }
    }
}

/// Counts a batch that did not commit whole and is retried in halves
/// (`consumer_batches_split_total{topic, reason}`): a poison message or an unknown workspace in
/// it (expected now and then), or a failed transaction — which, for an effect whose batch path
/// differs from its single path, points at the batch path.
fn batch_split(messages: &[Incoming<'_>], reason: &'static str) {
    if let Some(first) = messages.first() {
        metrics::counter!(
            "consumer_batches_split_total",
            "topic" => first.topic.to_owned(),
            "reason" => reason
        )
        .increment(1);
    }
}

fn skipped(message: &Incoming<'_>, reason: &'static str) {
    tracing::warn!(
        workspace_id = message.envelope.workspace_id,
        reason,
        "message skipped"
    );
    metrics::counter!(
        "consumer_messages_skipped_total",
        "topic" => message.topic.to_owned(),
        "reason" => reason
    )
    .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(bytes: usize) -> outbox::NewOutboxMessage {
        outbox::NewOutboxMessage {
            topic: "t".into(),
            message_key: None,
            payload: vec![0; bytes],
            headers: serde_json::Value::Null,
        }
    }

    fn chunk_sizes(sizes: &[usize], limit: usize) -> Vec<Vec<usize>> {
        let rows: Vec<_> = sizes.iter().map(|&n| row(n)).collect();
        chunk_by_payload_bytes(&rows, limit)
            .map(|chunk| chunk.iter().map(|r| r.payload.len()).collect())
            .collect()
    }

    #[test]
    fn outbox_rows_are_cut_into_runs_within_the_byte_limit_in_order() {
        assert_eq!(
            chunk_sizes(&[4, 4, 2, 5, 1], 10),
            vec![vec![4, 4, 2], vec![5, 1]]
        );
    }

    #[test]
    fn an_outbox_row_larger_than_the_limit_goes_alone_and_nothing_is_dropped() {
        assert_eq!(
            chunk_sizes(&[3, 25, 3], 10),
            vec![vec![3], vec![25], vec![3]]
        );
        assert!(chunk_sizes(&[], 10).is_empty());
    }
}
