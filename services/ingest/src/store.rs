//! ingest's tables: the inbox (and, through the platform, the outbox and the projection).
//!
//! A webhook is accepted by one transaction that inserts it into `inbox` (its dedupe key is
//! unique) and, when it is to be relayed, its envelope into `outbox`. The HTTP answer is sent
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
use diesel::{prelude::*, sql_types::BigInt};
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
