//! The transactional outbox.
//!
//! A service that must publish because of a database change writes the message into its own
//! `outbox` table in the same transaction as the change, and a relay publishes it afterwards.
//! So a message exists if and only if the change committed: nothing is lost when Kafka is down
//! (rows wait), and nothing is published for a change that rolled back.
//!
//! Delivery is at-least-once: the relay deletes rows only after Kafka acknowledged them, so a
//! crash between the two, or a pass that fails half-way, republishes them; consumers
//! deduplicate on the envelope's event id (and guard against older data by version or
//! `updated_at`, so a republished older message cannot undo a newer one).
//! Order: one relay at a time per schema (a transaction-scoped advisory lock) publishing rows
//! in id order, so per-key order is insert order; writers that need a strict per-key order
//! serialise themselves (mapping locks the workspace row).
//!
//! Failure policy: a pass where Kafka could not take a message for a reason that may pass
//! (broker down, timeout) rolls back and is retried whole. A message Kafka can *never* take
//! (too large, invalid topic) is moved to `outbox_rejected` with the error, so one bad row
//! cannot wedge the outbox; operators replay or discard it from there.
//!
//! Every service's migrations create the table with this shape:
//! ```sql
//! CREATE TABLE outbox (
//!     id          BIGSERIAL PRIMARY KEY,
//!     topic       TEXT NOT NULL,
//!     message_key TEXT,
//!     payload     BYTEA NOT NULL,
//!     created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
//! );
//! CREATE TABLE outbox_rejected (
//!     id          BIGINT PRIMARY KEY,
//!     topic       TEXT NOT NULL,
//!     message_key TEXT,
//!     payload     BYTEA NOT NULL,
//!     error       TEXT NOT NULL,
//!     created_at  TIMESTAMPTZ NOT NULL,
//!     rejected_at TIMESTAMPTZ NOT NULL DEFAULT now()
//! );
//! ```

use std::future::Future;

use chrono::{DateTime, Utc};
use diesel::{prelude::*, sql_types::BigInt};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::{DbError, Pool};

diesel::table! {
    outbox (id) {
        id -> BigInt,
        topic -> Text,
        message_key -> Nullable<Text>,
        payload -> Bytea,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    outbox_rejected (id) {
        id -> BigInt,
        topic -> Text,
        message_key -> Nullable<Text>,
        payload -> Bytea,
        error -> Text,
        created_at -> Timestamptz,
        rejected_at -> Timestamptz,
    }
}

/// A message to publish once the surrounding transaction commits.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = outbox)]
pub struct NewOutboxMessage {
    pub topic: String,
    pub message_key: Option<String>,
    pub payload: Vec<u8>,
}

/// A message waiting in the outbox.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = outbox)]
pub struct OutboxMessage {
    pub id: i64,
    pub topic: String,
    pub message_key: Option<String>,
    pub payload: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

/// Adds messages to the outbox; call inside the transaction that makes the change.
pub async fn enqueue(
    conn: &mut AsyncPgConnection,
    messages: &[NewOutboxMessage],
) -> QueryResult<()> {
    if messages.is_empty() {
        return Ok(());
    }
    diesel::insert_into(outbox::table)
        .values(messages)
        .execute(conn)
        .await
        .map(drop)
}

/// What became of one message handed to the publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// Acknowledged by Kafka.
    Acknowledged,
    /// Not taken, for a reason that may pass (broker down, timeout): retry later.
    Retry(String),
    /// Can never be taken (too large, invalid topic).
    Rejected(String),
}

/// Publishes a batch of outbox messages; returns one outcome per message, in order, once every
/// message was acknowledged or failed.
pub trait OutboxPublisher: Send + Sync {
    fn publish(&self, messages: &[OutboxMessage]) -> impl Future<Output = Vec<Published>> + Send;
}

/// What one relay pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayPass {
    /// Messages published and removed, and messages moved to `outbox_rejected`.
    Relayed { published: usize, rejected: usize },
    /// Another relay holds the lock for this schema.
    Busy,
}

impl RelayPass {
    /// Whether the pass moved anything (so another pass may find more).
    pub fn moved_any(self) -> bool {
        matches!(self, RelayPass::Relayed { published, rejected } if published + rejected > 0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("publishing failed; messages stay in the outbox: {0}")]
    Publish(String),
}

impl From<diesel::result::Error> for RelayError {
    fn from(e: diesel::result::Error) -> Self {
        RelayError::Db(DbError::Query(e))
    }
}

/// Publishes up to `batch` of the oldest messages and deletes them, in one transaction.
/// If any message must be retried, the transaction rolls back and every message stays for the
/// next pass; messages Kafka rejects for good move to `outbox_rejected`.
pub async fn relay_once<P: OutboxPublisher>(
    pool: &Pool,
    lock_key: i64,
    batch: i64,
    publisher: &P,
) -> Result<RelayPass, RelayError> {
    let mut conn = pool.get().await.map_err(DbError::from)?;
    conn.transaction::<RelayPass, RelayError, _>(async |conn| {
        let locked: bool = diesel::select(pg_try_advisory_xact_lock(lock_key))
            .get_result(conn)
            .await
            .map_err(DbError::from)?;
        if !locked {
            return Ok(RelayPass::Busy);
        }
        let messages: Vec<OutboxMessage> = outbox::table
            .order(outbox::id)
            .limit(batch)
            .select(OutboxMessage::as_select())
            .load(conn)
            .await
            .map_err(DbError::from)?;
        if messages.is_empty() {
            return Ok(RelayPass::Relayed { published: 0, rejected: 0 });
        }
        let outcomes = publisher.publish(&messages).await;
        if let Some(reason) = outcomes.iter().find_map(|o| match o {
            Published::Retry(reason) => Some(reason.clone()),
            _ => None,
        }) {
            return Err(RelayError::Publish(reason));
        }
        let rejected: Vec<(&OutboxMessage, &String)> = messages
            .iter()
            .zip(&outcomes)
            .filter_map(|(m, o)| match o {
                Published::Rejected(error) => Some((m, error)),
                _ => None,
            })
            .collect();
        for (message, error) in &rejected {
            tracing::error!(id = message.id, topic = %message.topic, %error, "outbox message rejected by Kafka for good");
            diesel::insert_into(outbox_rejected::table)
                .values((
                    outbox_rejected::id.eq(message.id),
                    outbox_rejected::topic.eq(&message.topic),
                    outbox_rejected::message_key.eq(&message.message_key),
                    outbox_rejected::payload.eq(&message.payload),
                    outbox_rejected::error.eq(*error),
                    outbox_rejected::created_at.eq(message.created_at),
                ))
                .execute(conn)
                .await
                .map_err(DbError::from)?;
        }
        let ids: Vec<i64> = messages.iter().map(|m| m.id).collect();
        diesel::delete(outbox::table.filter(outbox::id.eq_any(&ids)))
            .execute(conn)
            .await
            .map_err(DbError::from)?;
        Ok(RelayPass::Relayed { published: messages.len() - rejected.len(), rejected: rejected.len() })
    })
    .await
}

/// Messages waiting in the outbox (for health and stats).
pub async fn pending(pool: &Pool) -> Result<i64, DbError> {
    let mut conn = pool.get().await?;
    Ok(outbox::table.count().get_result(&mut conn).await?)
}

diesel::define_sql_function! {
    fn pg_try_advisory_xact_lock(key: BigInt) -> Bool;
}
