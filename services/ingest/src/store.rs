//! ingest's tables: the inbox (and, through the platform, the outbox and the projection).
//!
//! A webhook is accepted by one atomic write that inserts it into `inbox` (its dedupe key is
//! unique) and, when it is to be relayed, its envelope into `outbox` — for a versioned body a
//! single statement (one round trip), for an unversioned one a transaction. The HTTP answer is sent
//! only after that commit, so an answered webhook is never lost: with Kafka down it waits in
//! the outbox; answered twice (a retry) it is recognised by its key and relayed once. An
//! unversioned body's key is windowed (see [`crate::fyle::DedupeKey`]): under a transaction
//! lock on the body's hash, a row of the same body in this or the previous bucket, received
//! within the window, makes the delivery a repeat — so concurrent repeats cannot both win and
//! a retry across a bucket boundary is still recognised.
//!
//! The inbox is pruned after `inbox.keep_for` by [`prune`]; a versioned body redelivered after
//! that is accepted again and changes nothing downstream (fyle-sync's versions).

use std::time::Duration;

use attrsync_db::{
    DbError, Pool,
    outbox::{self, NewOutboxMessage},
};
use attrsync_kafka::workspaces::workspace_projection;
use diesel::{
    prelude::*,
    sql_types::{BigInt, Bool, Bytea, Jsonb, Nullable, Text},
};
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::Value;

use crate::{
    auth::Verified,
    fyle::{DedupeKey, Disposition, UNVERSIONED_DEDUPE_WINDOW_SECS},
};

diesel::table! {
    inbox (id) {
        id -> BigInt,
        delivery_id -> Text,
        dedupe_key -> Text,
        source -> Text,
        workspace_id -> Nullable<BigInt>,
        action -> Text,
        resource -> Nullable<Text>,
        disposition -> Text,
        topic -> Nullable<Text>,
        body -> Jsonb,
        received_at -> Timestamptz,
        duplicates -> Integer,
    }
}

/// A webhook ready to be stored.
#[derive(Debug)]
pub struct NewDelivery<'a> {
    pub delivery_id: &'a str,
    pub dedupe_key: &'a DedupeKey,
    pub action: &'a str,
    pub resource: Option<&'a str>,
    pub disposition: Disposition,
    /// The outbox row, when relayed.
    pub publish: Option<NewOutboxMessage>,
    pub body: &'a Value,
}

/// The outcome of storing a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    New {
        delivery_id: String,
    },
    /// Seen before; the first delivery's id.
    Duplicate {
        delivery_id: String,
    },
}

/// Stores a delivery (and its outbox row) within `deadline`. Only an authenticated delivery
/// ([`Verified`]) can reach the inbox.
pub async fn accept(
    pool: &Pool,
    verified: &Verified,
    delivery: &NewDelivery<'_>,
    deadline: Duration,
) -> Result<Stored, DbError> {
    if let DedupeKey::Always(key) = delivery.dedupe_key {
        return attrsync_db::with_deadline(
            deadline,
            accept_versioned(pool, verified, delivery, key),
        )
        .await;
    }
    let store = async {
        let mut conn = pool.get().await?;
        conn.transaction::<_, DbError, _>(async |conn| {
            if let DedupeKey::Windowed { body, bucket } = delivery.dedupe_key
                && let Some(delivery_id) = recent_repeat(conn, body, *bucket).await?
            {
                return Ok(Stored::Duplicate { delivery_id });
            }
            // A repeat increments the first row's counter; `duplicates == 0` means this
            // delivery is the first.
            let (delivery_id, duplicates): (String, i32) = diesel::insert_into(inbox::table)
                .values((
                    inbox::delivery_id.eq(delivery.delivery_id),
                    inbox::dedupe_key.eq(delivery.dedupe_key.stored()),
                    inbox::source.eq(verified.source()),
                    inbox::workspace_id.eq(verified.workspace_id()),
                    inbox::action.eq(delivery.action),
                    inbox::resource.eq(delivery.resource),
                    inbox::disposition.eq(delivery.disposition.as_str()),
                    inbox::topic.eq(delivery.publish.as_ref().map(|m| m.topic.as_str())),
                    inbox::body.eq(delivery.body),
                ))
                .on_conflict(inbox::dedupe_key)
                .do_update()
                .set(inbox::duplicates.eq(inbox::duplicates + 1))
                .returning((inbox::delivery_id, inbox::duplicates))
                .get_result(conn)
                .await?;
            if duplicates > 0 {
                return Ok(Stored::Duplicate { delivery_id });
            }
            if let Some(message) = &delivery.publish {
                outbox::enqueue(conn, std::slice::from_ref(message)).await?;
            }
            Ok(Stored::New { delivery_id })
        })
        .await
    };
    attrsync_db::with_deadline(deadline, store).await
}

#[derive(diesel::QueryableByName)]
struct DeliveryId {
    #[diesel(sql_type = Text)]
    delivery_id: String,
}

/// A versioned delivery (the common case) in one statement — inbox row and outbox row together,
/// atomic as one statement is, one round trip — and, only for a repeat, a second one counting it.
async fn accept_versioned(
    pool: &Pool,
    verified: &Verified,
    delivery: &NewDelivery<'_>,
    key: &str,
) -> Result<Stored, DbError> {
    let mut conn = pool.get().await?;
    let publish = delivery.publish.as_ref();
    let first: Option<DeliveryId> = diesel::sql_query(
        "WITH first AS ( \
             INSERT INTO inbox (delivery_id, dedupe_key, source, workspace_id, action, resource, \
                                disposition, topic, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (dedupe_key) DO NOTHING \
             RETURNING delivery_id \
         ), relayed AS ( \
             INSERT INTO outbox (topic, message_key, payload, headers) \
             SELECT $10, $11, $12, $13 FROM first WHERE $14 \
         ) \
         SELECT delivery_id FROM first",
    )
    .bind::<Text, _>(delivery.delivery_id)
    .bind::<Text, _>(key)
    .bind::<Text, _>(verified.source())
    .bind::<Nullable<BigInt>, _>(verified.workspace_id())
    .bind::<Text, _>(delivery.action)
    .bind::<Nullable<Text>, _>(delivery.resource)
    .bind::<Text, _>(delivery.disposition.as_str())
    .bind::<Nullable<Text>, _>(publish.map(|m| m.topic.as_str()))
    .bind::<Jsonb, _>(delivery.body)
    .bind::<Text, _>(publish.map_or("", |m| m.topic.as_str()))
    .bind::<Nullable<Text>, _>(publish.and_then(|m| m.message_key.as_deref()))
    .bind::<Bytea, _>(publish.map_or(&[][..], |m| m.payload.as_slice()))
    .bind::<Jsonb, _>(publish.map_or(&Value::Null, |m| &m.headers))
    .bind::<Bool, _>(publish.is_some())
    .get_result(&mut conn)
    .await
    .optional()?;
    if let Some(first) = first {
        return Ok(Stored::New {
            delivery_id: first.delivery_id,
        });
    }
    let repeat: DeliveryId = diesel::sql_query(
        "UPDATE inbox SET duplicates = duplicates + 1 WHERE dedupe_key = $1 \
         RETURNING delivery_id",
    )
    .bind::<Text, _>(key)
    .get_result(&mut conn)
    .await?;
    Ok(Stored::Duplicate {
        delivery_id: repeat.delivery_id,
    })
}

/// The first delivery of the same unversioned body in bucket `bucket` or the one before,
/// received within the window (counting this repeat on it), under a transaction lock on the
/// body's hash.
async fn recent_repeat(
    conn: &mut diesel_async::AsyncPgConnection,
    body: &str,
    bucket: i64,
) -> Result<Option<String>, DbError> {
    diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
        .bind::<BigInt, _>(attrsync_db::advisory_key(body))
        .execute(conn)
        .await?;
    let keys = [format!("{body}:{bucket}"), format!("{body}:{}", bucket - 1)];
    let within_window = diesel::dsl::sql::<diesel::sql_types::Bool>(&format!(
        "received_at > now() - interval '{UNVERSIONED_DEDUPE_WINDOW_SECS} seconds'"
    ));
    let repeat: Option<String> = diesel::update(
        inbox::table
            .filter(inbox::dedupe_key.eq_any(&keys))
            .filter(within_window),
    )
    .set(inbox::duplicates.eq(inbox::duplicates + 1))
    .returning(inbox::delivery_id)
    .get_result(conn)
    .await
    .optional()?;
    Ok(repeat)
}

/// Whether some (other) workspace owns `org_id`.
pub async fn org_is_known(pool: &Pool, org_id: &str) -> Result<bool, DbError> {
    use workspace_projection::dsl as p;
    let mut conn = pool.get().await?;
    let count: i64 = p::workspace_projection
        .filter(p::fyle_org_id.eq(org_id))
        .filter(p::deleted.eq(false))
        .count()
        .get_result(&mut conn)
        .await?;
    Ok(count > 0)
}

/// Inbox totals of one workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InboxStats {
    /// Distinct deliveries accepted.
    pub accepted: i64,
    /// Repeats of accepted deliveries (acknowledged, not relayed again).
    pub duplicates: i64,
    /// Deliveries handed to the outbox for relay.
    pub published: i64,
    pub last_received_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Deletes inbox rows older than `keep_for` (see the module doc).
pub async fn prune(pool: &Pool, keep_for: Duration) -> Result<u64, DbError> {
    attrsync_runtime::retention::prune(
        pool,
        "ingest.inbox",
        "DELETE FROM inbox WHERE id IN ( \
             SELECT id FROM inbox WHERE received_at < now() - $1 ORDER BY received_at LIMIT $2)",
        keep_for,
    )
    .await
}

pub async fn stats(pool: &Pool, workspace_id: i64) -> Result<InboxStats, DbError> {
    use diesel::dsl::{count_star, max, sum};
    let mut conn = pool.get().await?;
    let (accepted, duplicates, last_received_at): (
        i64,
        Option<i64>,
        Option<chrono::DateTime<chrono::Utc>>,
    ) = inbox::table
        .filter(inbox::workspace_id.eq(workspace_id))
        .select((
            count_star(),
            sum(inbox::duplicates),
            max(inbox::received_at),
        ))
        .first(&mut conn)
        .await?;
    let published: i64 = inbox::table
        .filter(inbox::workspace_id.eq(workspace_id))
        .filter(inbox::disposition.eq("PUBLISHED"))
        .count()
        .get_result(&mut conn)
        .await?;
    Ok(InboxStats {
        accepted,
        duplicates: duplicates.unwrap_or(0),
        published,
        last_received_at,
    })
}
