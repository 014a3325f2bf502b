//! ingest's tables: the inbox, the outbox and the workspace projection.
//!
//! A webhook is accepted by one transaction that inserts it into `inbox` (its dedupe key is
//! unique) and, when it is to be relayed, its envelope into `outbox`. The HTTP answer is sent
//! only after that commit, so an answered webhook is never lost: with Kafka down it waits in
//! the outbox; answered twice (a retry) it is recognised by its key and relayed once.

use attrsync_db::{
    DbError, Pool,
    outbox::{self, NewOutboxMessage},
};
use attrsync_kafka::workspaces::{self, ProjectedWorkspace, workspace_projection};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::Value;

use crate::fyle::Disposition;

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
    pub dedupe_key: &'a str,
    pub workspace_id: i64,
    pub action: &'a str,
    pub resource: Option<&'a str>,
    pub disposition: Disposition,
    /// The (prefixed) topic and encoded envelope, when relayed.
    pub publish: Option<(String, Vec<u8>)>,
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

pub async fn accept(pool: &Pool, delivery: &NewDelivery<'_>) -> Result<Stored, DbError> {
    let mut conn = pool.get().await?;
    let stored = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            // A repeat increments the first row's counter; `duplicates == 0` means this
            // delivery is the first.
            let (delivery_id, duplicates): (String, i32) = diesel::insert_into(inbox::table)
                .values((
                    inbox::delivery_id.eq(delivery.delivery_id),
                    inbox::dedupe_key.eq(delivery.dedupe_key),
                    inbox::source.eq("fyle"),
                    inbox::workspace_id.eq(delivery.workspace_id),
                    inbox::action.eq(delivery.action),
                    inbox::resource.eq(delivery.resource),
                    inbox::disposition.eq(delivery.disposition.as_str()),
                    inbox::topic.eq(delivery.publish.as_ref().map(|(t, _)| t.as_str())),
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
            if let Some((topic, payload)) = &delivery.publish {
                let message = NewOutboxMessage {
                    topic: topic.clone(),
                    message_key: Some(delivery.workspace_id.to_string()),
                    payload: payload.clone(),
                };
                outbox::enqueue(conn, &[message]).await?;
            }
            Ok(Stored::New { delivery_id })
        })
        .await?;
    Ok(stored)
}

pub async fn find_workspace(
    pool: &Pool,
    workspace_id: i64,
) -> Result<Option<ProjectedWorkspace>, DbError> {
    let mut conn = pool.get().await?;
    Ok(workspaces::find(&mut conn, workspace_id).await?)
}

/// Stores a snapshot fetched from mapping into the projection.
pub async fn remember_workspace(pool: &Pool, row: &ProjectedWorkspace) -> Result<(), DbError> {
    let mut conn = pool.get().await?;
    workspaces::apply(&mut conn, row).await?;
    Ok(())
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
