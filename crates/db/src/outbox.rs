//! The transactional outbox.
//!
//! A service that must publish because of a database change writes the message into its own
//! `outbox` table in the same transaction as the change, and a relay publishes it afterwards.
//! So a message exists if and only if the change committed: nothing is lost when Kafka is down
//! (rows wait), and nothing is published for a change that rolled back. The table is one of
//! the platform tables ([`crate::PLATFORM_MIGRATIONS`]); each row carries its Kafka headers
//! (trace context, event id) so the relay never decodes a payload.
//!
//! Delivery is at-least-once: the relay deletes rows only after Kafka acknowledged them, so a
//! crash between the two republishes them — as does a crash that loses a pass's commit, which
//! is therefore not waited for (`synchronous_commit = off` on the relay's own connection only).
//! Consumers deduplicate on the envelope's event id (and guard against older data by version,
//! so a republished older message cannot undo a newer one).
//!
//! Order: one relay at a time per schema publishing rows in id order, so per-key order is
//! insert order; writers that need a strict per-key order serialise themselves (mapping locks
//! the workspace row). The one relay is whichever [`Relay`] holds the schema's session advisory
//! lock, on a connection taken out of the pool for it: a pass is then two autocommit
//! statements (read the oldest rows; delete what Kafka took, which also answers whether rows
//! are still waiting, so the relay passes again at once only then — with a transaction around
//! the delete when a row is set aside), where a transaction-scoped lock cost five round trips
//! per pass. The others stay on standby: each pass tries the lock and, finding it held, notifies
//! the holder (`pg_notify`; the holder `LISTEN`s), so a commit on any replica is published
//! at once, not at the holder's next poll. The holder lets go after a pass Kafka did not
//! take whole (so a replica whose Kafka works takes over) and on shutdown; any database error
//! drops the connection, which releases the lock. A holder cut off without closing is
//! noticed by the server's keepalives, set on the relay's session to about a minute.
//!
//! A pass takes the oldest rows up to a count *and* a byte budget (at least one row), so one
//! pass never holds more than a bounded amount of payload in memory.
//!
//! Failure policy, per message of a pass:
//! - acknowledged: deleted;
//! - refused for good by Kafka (too large, invalid topic): moved to `outbox_rejected` with the
//!   error, counted in `outbox_rejected_total` and logged at ERROR with its id, so one bad row
//!   cannot wedge the outbox; operators replay or discard it from there;
//! - not taken for a reason that may pass (broker down, timeout): kept. Per message key, only
//!   the prefix before the first kept message is removed — later messages of that key are
//!   kept too and resent after it, so a key's messages never overtake each other for good —
//!   while every other key's acknowledged messages are removed. The pass reports the failure
//!   and the relay backs off.

use std::{collections::HashSet, future::Future};

use chrono::{DateTime, Utc};
use diesel::{
    prelude::*,
    sql_types::{Array, BigInt, Bool, Bytea, Jsonb, Nullable, Text, Timestamptz},
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, pooled_connection::deadpool};
use serde_json::Value;

use crate::{DbError, Pool};

diesel::table! {
    outbox (id) {
        id -> BigInt,
        topic -> Text,
        message_key -> Nullable<Text>,
        payload -> Bytea,
        created_at -> Timestamptz,
        headers -> Jsonb,
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
    /// The full (prefixed) topic name.
    pub topic: String,
    pub message_key: Option<String>,
    pub payload: Vec<u8>,
    /// Kafka headers, a JSON object of strings.
    pub headers: Value,
}

/// A message waiting in the outbox.
#[derive(Debug, Clone, QueryableByName)]
pub struct OutboxMessage {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub topic: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub message_key: Option<String>,
    #[diesel(sql_type = Bytea)]
    pub payload: Vec<u8>,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
    #[diesel(sql_type = Jsonb)]
    pub headers: Value,
}

impl OutboxMessage {
    /// The stored headers as key/value pairs (non-string values are skipped).
    pub fn header_pairs(&self) -> Vec<(&str, &str)> {
        self.headers
            .as_object()
            .map(|map| {
                map.iter()
                    .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                    .collect()
            })
            .unwrap_or_default()
    }
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

/// How much one relay pass may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassLimits {
    pub max_messages: i64,
    /// Payload bytes; the first message is taken whatever its size.
    pub max_bytes: i64,
}

impl Default for PassLimits {
    fn default() -> Self {
        Self {
            max_messages: 500,
            max_bytes: 8 * 1024 * 1024,
        }
    }
}

/// What one relay pass did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayPass {
    /// Messages published and removed, moved to `outbox_rejected`, and kept for a retry (with
    /// the first reason).
    Relayed {
        published: usize,
        rejected: usize,
        kept: usize,
        retry_reason: Option<String>,
        /// Whether rows were left in the outbox after the pass (kept ones, or more than one
        /// pass takes): the relay passes again at once only then.
        more_waiting: bool,
    },
    /// Another relay holds the lock for this schema.
    Busy,
}

impl RelayPass {
    /// Whether the pass moved anything.
    pub fn moved_any(&self) -> bool {
        matches!(self, RelayPass::Relayed { published, rejected, .. } if published + rejected > 0)
    }

    /// Whether the pass moved something and left rows behind, so another pass has work now.
    pub fn more_waiting(&self) -> bool {
        self.moved_any()
            && matches!(
                self,
                RelayPass::Relayed {
                    more_waiting: true,
                    ..
                }
            )
    }

    /// Whether some messages could not be published and wait for the next pass.
    pub fn failed(&self) -> Option<&str> {
        match self {
            RelayPass::Relayed {
                retry_reason: Some(reason),
                ..
            } => Some(reason),
            _ => None,
        }
    }
}

/// The decision for each message of a pass, from the publisher's outcomes (pure; see the
/// module's failure policy): `None` keeps the message, `Some(outcome)` removes it.
pub fn settle<'a>(
    messages: &[OutboxMessage],
    outcomes: &'a [Published],
) -> Vec<Option<&'a Published>> {
    let mut blocked_keys: HashSet<&str> = HashSet::new();
    messages
        .iter()
        .zip(outcomes)
        .map(|(message, outcome)| {
            let key = message.message_key.as_deref();
            if key.is_some_and(|k| blocked_keys.contains(k)) {
                return None;
            }
            match outcome {
                Published::Retry(_) => {
                    if let Some(k) = key {
                        blocked_keys.insert(k);
                    }
                    None
                }
                done => Some(done),
            }
        })
        .collect()
}

/// One relay's hold on its schema's outbox (see the module doc): a connection of its own and,
/// while it is the schema's relay, the session advisory lock `lock_key`.
pub struct Relay {
    pool: Pool,
    lock_key: i64,
    limits: PassLimits,
    session: Option<Session>,
}

struct Session {
    conn: AsyncPgConnection,
    holds_lock: bool,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("lock_key", &self.lock_key)
            .field("limits", &self.limits)
            .field(
                "holds_lock",
                &self.session.as_ref().is_some_and(|s| s.holds_lock),
            )
            .finish()
    }
}

impl Relay {
    /// A relay for the outbox `pool`'s schema; it connects on its first pass.
    pub fn new(pool: Pool, lock_key: i64, limits: PassLimits) -> Self {
        Self {
            pool,
            lock_key,
            limits,
            session: None,
        }
    }

    /// Publishes the oldest messages within the limits and settles them, if this relay holds
    /// (or now takes) the schema's lock; [`RelayPass::Busy`] if another does, which is then
    /// told there is work ([`Relay::notified`]). An error drops the connection and with it the
    /// lock; a pass that left messages for a retry (Kafka failing) releases the lock, so a
    /// replica whose Kafka works can take over.
    pub async fn pass<P: OutboxPublisher>(&mut self, publisher: &P) -> Result<RelayPass, DbError> {
        let outcome = self.pass_on_session(publisher).await;
        match &outcome {
            Err(_) => self.session = None,
            Ok(pass) if pass.failed().is_some() => self.release().await,
            Ok(_) => {}
        }
        outcome
    }

    /// Resolves when another replica's relay found the lock held and said it has work; never,
    /// while this relay does not hold the lock.
    pub async fn notified(&mut self) {
        match &mut self.session {
            Some(session) if session.holds_lock => {
                use futures::{FutureExt as _, StreamExt as _};
                let mut notifications = std::pin::pin!(session.conn.notifications_stream());
                // An error here is the connection's; the next pass meets it and reconnects.
                let _ = notifications.next().await;
                // One pass answers every notification already here.
                while let Some(Some(_)) = notifications.next().now_or_never() {}
            }
            _ => std::future::pending().await,
        }
    }

    /// Releases the lock (at once, not when the server notices the closed connection) and
    /// closes the connection.
    pub async fn release(&mut self) {
        if let Some(mut session) = self.session.take()
            && session.holds_lock
        {
            let _ = crate::prepared::sql("SELECT pg_advisory_unlock($1)")
                .bind::<BigInt, _>(self.lock_key)
                .execute(&mut session.conn)
                .await;
        }
    }

    /// The channel the holder listens on (per lock key: several schemas share a database).
    fn channel(&self) -> String {
        format!("outbox_relay_{}", self.lock_key as u64)
    }

    async fn pass_on_session<P: OutboxPublisher>(
        &mut self,
        publisher: &P,
    ) -> Result<RelayPass, DbError> {
        let channel = self.channel();
        let session = match &mut self.session {
            Some(session) => session,
            None => {
                // Taken out of the pool for good (the pool may open another in its place):
                // a session lock must never be handed to another user of the pool.
                let mut conn = deadpool::Object::take(self.pool.get().await?);
                // The lock lives as long as the server believes the session does: a holder cut
                // off without a goodbye must be noticed in about a minute, not after the
                // kernel's two-hour keepalive.
                crate::prepared::sql(
                    "SELECT set_config('tcp_keepalives_idle', '15', false), \
                            set_config('tcp_keepalives_interval', '5', false), \
                            set_config('tcp_keepalives_count', '4', false), \
                            set_config('tcp_user_timeout', '35000', false)",
                )
                .execute(&mut conn)
                .await?;
                self.session.insert(Session {
                    conn,
                    holds_lock: false,
                })
            }
        };
        if !session.holds_lock {
            // Once held: commits on this connection need not wait for their WAL flush (a
            // crash that loses one republishes its rows, which at-least-once allows), and the
            // services' own commits do not queue behind the relay's.
            session.holds_lock = crate::prepared::sql(
                "SELECT pg_try_advisory_lock($1) \
                        AND set_config('synchronous_commit', 'off', false) IS NOT NULL AS locked",
            )
            .bind::<BigInt, _>(self.lock_key)
            .get_result::<Locked>(&mut session.conn)
            .await?
            .locked;
            if !session.holds_lock {
                // The holder may be idle until its next poll: tell it this replica committed.
                crate::prepared::sql("SELECT pg_notify($1, '')")
                    .bind::<Text, _>(&channel)
                    .execute(&mut session.conn)
                    .await?;
                return Ok(RelayPass::Busy);
            }
            diesel::sql_query(format!("LISTEN {channel}"))
                .execute(&mut session.conn)
                .await?;
        }
        relay_pass(&mut session.conn, self.limits, publisher).await
    }
}

/// One pass by a throwaway [`Relay`], which then releases the lock and closes its
/// connection: for tests and one-off drains; a running service keeps one [`Relay`].
pub async fn relay_once<P: OutboxPublisher>(
    pool: &Pool,
    lock_key: i64,
    limits: PassLimits,
    publisher: &P,
) -> Result<RelayPass, DbError> {
    let mut relay = Relay::new(pool.clone(), lock_key, limits);
    let pass = relay.pass(publisher).await;
    relay.release().await;
    pass
}

/// Reads the oldest messages within `limits`, publishes them and settles them, on a connection
/// holding the schema's relay lock.
async fn relay_pass<P: OutboxPublisher>(
    conn: &mut AsyncPgConnection,
    limits: PassLimits,
    publisher: &P,
) -> Result<RelayPass, DbError> {
    let messages: Vec<OutboxMessage> = crate::prepared::sql(
        "SELECT id, topic, message_key, payload, created_at, headers FROM ( \
             SELECT *, sum(octet_length(payload)) OVER (ORDER BY id) AS running \
             FROM (SELECT * FROM outbox ORDER BY id LIMIT $1) oldest \
         ) sized WHERE running - octet_length(payload) < $2 ORDER BY id",
    )
    .bind::<BigInt, _>(limits.max_messages)
    .bind::<BigInt, _>(limits.max_bytes)
    .load(conn)
    .await?;
    if messages.is_empty() {
        return Ok(RelayPass::Relayed {
            published: 0,
            rejected: 0,
            kept: 0,
            retry_reason: None,
            more_waiting: false,
        });
    }
    let outcomes = publisher.publish(&messages).await;
    let decisions = settle(&messages, &outcomes);
    let mut removed = Vec::new();
    let mut refused = Vec::new();
    let (mut published, mut kept) = (0, 0);
    for (message, decision) in messages.iter().zip(&decisions) {
        match decision {
            None => kept += 1,
            Some(Published::Rejected(error)) => {
                refused.push((message, error.as_str()));
                removed.push(message.id);
            }
            Some(_) => {
                published += 1;
                removed.push(message.id);
            }
        }
    }
    let rejected = refused.len();
    let more_waiting = if refused.is_empty() {
        // The delete also asks whether anything else waits (the statement sees the outbox as
        // it was before the delete, hence the ids left out): a burst costs a read and this,
        // not a third statement reading nothing. The oldest id, by the index, not `EXISTS`:
        // that one is planned as a scan of the heap's dead rows.
        crate::prepared::sql(
            "WITH gone AS (DELETE FROM outbox WHERE id = ANY($1)) \
             SELECT (SELECT id FROM outbox WHERE id <> ALL($2) ORDER BY id LIMIT 1) IS NOT NULL \
                 AS more",
        )
        .bind::<Array<BigInt>, _>(&removed)
        .bind::<Array<BigInt>, _>(&removed)
        .get_result::<MoreWaiting>(conn)
        .await?
        .more
    } else {
        // Set aside and removed together, so a refused message is never lost between them.
        conn.transaction::<(), DbError, _>(async |conn| {
            for (message, error) in refused {
                set_aside(conn, message, error).await?;
            }
            diesel::delete(outbox::table.filter(outbox::id.eq_any(&removed)))
                .execute(conn)
                .await?;
            Ok(())
        })
        .await?;
        // Rare: the next pass finds out.
        true
    };
    let retry_reason = outcomes.iter().find_map(|o| match o {
        Published::Retry(reason) => Some(reason.clone()),
        _ => None,
    });
    Ok(RelayPass::Relayed {
        published,
        rejected,
        kept,
        retry_reason,
        more_waiting: more_waiting || kept > 0,
    })
}

#[derive(QueryableByName)]
struct MoreWaiting {
    #[diesel(sql_type = Bool)]
    more: bool,
}

async fn set_aside(
    conn: &mut AsyncPgConnection,
    message: &OutboxMessage,
    error: &str,
) -> Result<(), DbError> {
    tracing::error!(
        outbox_id = message.id,
        topic = %message.topic,
        bytes = message.payload.len(),
        %error,
        "outbox message refused by Kafka for good; moved to outbox_rejected"
    );
    metrics::counter!("outbox_rejected_total", "topic" => message.topic.clone()).increment(1);
    diesel::insert_into(outbox_rejected::table)
        .values((
            outbox_rejected::id.eq(message.id),
            outbox_rejected::topic.eq(&message.topic),
            outbox_rejected::message_key.eq(&message.message_key),
            outbox_rejected::payload.eq(&message.payload),
            outbox_rejected::error.eq(error),
            outbox_rejected::created_at.eq(message.created_at),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Messages waiting in the outbox (for health and stats).
pub async fn pending(pool: &Pool) -> Result<i64, DbError> {
    let mut conn = pool.get().await?;
    Ok(outbox::table.count().get_result(&mut conn).await?)
}

/// Messages set aside in `outbox_rejected` (reported by the retention job).
pub async fn rejected(pool: &Pool) -> Result<i64, DbError> {
    let mut conn = pool.get().await?;
    Ok(outbox_rejected::table.count().get_result(&mut conn).await?)
}

#[derive(diesel::QueryableByName)]
struct Locked {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    locked: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: i64, key: Option<&str>) -> OutboxMessage {
        OutboxMessage {
            id,
            topic: "t".into(),
            message_key: key.map(str::to_owned),
            payload: vec![],
            created_at: Utc::now(),
            headers: Value::Null,
        }
    }

    #[test]
    fn a_failed_message_keeps_only_its_keys_remainder() {
        let messages = [
            message(1, Some("a")),
            message(2, Some("b")),
            message(3, Some("a")),
            message(4, Some("a")),
            message(5, Some("b")),
            message(6, None),
        ];
        let outcomes = [
            Published::Acknowledged,
            Published::Acknowledged,
            Published::Retry("timeout".into()),
            Published::Acknowledged,
            Published::Rejected("too large".into()),
            Published::Acknowledged,
        ];
        let removed: Vec<i64> = settle(&messages, &outcomes)
            .iter()
            .zip(&messages)
            .filter_map(|(d, m)| d.map(|_| m.id))
            .collect();
        // a: 1 acknowledged before the failure of 3; 3 and the acknowledged 4 stay, so 4 is
        // resent after 3. b: acknowledged 2 and rejected 5 both leave. 6 has no key.
        assert_eq!(removed, vec![1, 2, 5, 6]);
    }
}
