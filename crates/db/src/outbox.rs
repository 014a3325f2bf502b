//! The transactional outbox.
//!
//! A service that must publish because of a database change writes the message into its own
//! `outbox` table in the same transaction as the change, and a relay publishes it afterwards.
//! So a message exists if and only if the change committed: nothing is lost when Kafka is down
//! (rows wait), and nothing is published for a change that rolled back.
//!
//! Delivery is at-least-once: the relay deletes rows only after Kafka acknowledged them, so a
//! crash between the two republishes them; consumers deduplicate on the envelope's event id.
//! Order: one relay at a time per schema (a transaction-scoped advisory lock), rows in id
//! order, so per-key order matches commit order.
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

/// Publishes a batch of outbox messages; returns only when every one was acknowledged.
pub trait OutboxPublisher: Send + Sync {
    fn publish(
        &self,
        messages: &[OutboxMessage],
    ) -> impl Future<Output = Result<(), String>> + Send;
}

/// What one relay pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayPass {
    /// This many messages were published and removed.
    Relayed(usize),
    /// Another relay holds the lock for this schema.
    Busy,
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
/// On a publish failure the transaction rolls back and the messages stay for the next pass.
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
            return Ok(RelayPass::Relayed(0));
        }
        publisher
            .publish(&messages)
            .await
            .map_err(RelayError::Publish)?;
        let ids: Vec<i64> = messages.iter().map(|m| m.id).collect();
        diesel::delete(outbox::table.filter(outbox::id.eq_any(&ids)))
            .execute(conn)
            .await
            .map_err(DbError::from)?;
        Ok(RelayPass::Relayed(messages.len()))
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
