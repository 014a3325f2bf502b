//! ingest's tables: the inbox (and, through the platform, the outbox and the projection).
//!
//! A webhook is accepted by one atomic write that inserts it into `inbox` (its dedupe key is
//! unique) and, when it is to be relayed, its envelope into `outbox`. The HTTP answer is sent
//! only after that commit, so an answered webhook is never lost: with Kafka down it waits in
//! the outbox; answered twice (a retry) it is recognised by its key and relayed once.
//!
//! **Group commit.** Versioned deliveries (nearly all) are queued to a few writer tasks
//! ([`Inbox`]); each writer takes everything queued (up to `inbox.max_batch`) and stores it with
//! one statement — inbox rows and outbox rows of the whole batch, atomic as one statement is, one
//! round trip and one durable commit — then answers each waiting request. Nothing waits on
//! purpose: an idle edge writes batches of one, a busy one shares each commit among the
//! requests that arrived during the previous one. Repeats (of a stored delivery, or of another
//! in the same batch) are counted on the first row by a second statement and answered
//! `duplicate` with its id. A batch closes at `inbox.max_batch` deliveries or 4 MiB of bodies.
//! Failure policy: a batch the database cannot take now (down, slow past
//! `database.query_timeout` for the checkout and both statements together) answers every request
//! in it 503 — nothing stored, or, if the commit landed just as time ran out, stored and
//! recognised as a duplicate when the sender retries; a batch it refuses for its content is
//! retried one delivery at a time, so one bad delivery cannot fail its neighbours; a request
//! whose deadline passes while it waits is answered 503 and, if its batch has not been taken
//! yet, dropped from it. After shutdown the writers drain the queue until it stays empty for a
//! second; later requests get 503.
//!
//! An unversioned body's key is windowed (see [`crate::fyle::DedupeKey`]) and written in a
//! transaction of its own: under a transaction lock on the body's hash, a row of the same body
//! in this or the previous bucket, received within the window, makes the delivery a repeat —
//! so concurrent repeats cannot both win and a retry across a bucket boundary is still
//! recognised.
//!
//! The inbox is pruned after `inbox.keep_for` by [`prune`]; a versioned body redelivered after
//! that is accepted again and changes nothing downstream (fyle-sync's versions).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    future::Future,
    time::Duration,
};

use attrsync_db::{
    DbError, Failure, Pool,
    outbox::{self, NewOutboxMessage},
};
use attrsync_kafka::workspaces::workspace_projection;
use diesel::{
    prelude::*,
    sql_types::{Array, BigInt, Bytea, Integer, Jsonb, Nullable, Text},
};
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

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

/// How the group commit of versioned deliveries runs (`[inbox]` in the configuration).
#[derive(Debug, Clone, Copy)]
pub struct GroupCommit {
    /// Writers committing batches concurrently (while one commits, the next batch gathers).
    pub writers: usize,
    /// The most deliveries one statement carries.
    pub max_batch: usize,
    /// How long one batch statement may take; its deliveries are answered 503 after that.
    pub statement_timeout: Duration,
}

/// The inbox: where authenticated deliveries are stored (see the module doc).
#[derive(Clone)]
pub struct Inbox {
    pool: Pool,
    queue: mpsc::Sender<Queued>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field(
                "queued",
                &(self.queue.max_capacity() - self.queue.capacity()),
            )
            .finish_non_exhaustive()
    }
}

/// A versioned delivery waiting for its batch, and where its outcome goes.
#[derive(Debug)]
struct Queued {
    row: VersionedRow,
    reply: oneshot::Sender<Result<Stored, Failure>>,
}

/// The most body and payload bytes one batch statement carries (a batch is also closed at
/// `max_batch` deliveries), so a run of large bodies cannot make a statement that outlives its
/// deadline.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// A versioned delivery as a writer binds it (owned: it crosses to a writer task).
#[derive(Debug)]
struct VersionedRow {
    delivery_id: String,
    dedupe_key: String,
    source: &'static str,
    workspace_id: Option<i64>,
    action: String,
    resource: Option<String>,
    disposition: &'static str,
    body: String,
    publish: Option<NewOutboxMessage>,
}

impl VersionedRow {
    fn bytes(&self) -> usize {
        self.body.len() + self.publish.as_ref().map_or(0, |m| m.payload.len())
    }
}

impl Inbox {
    /// The inbox and its group-commit writers (run them as a service task).
    pub fn start(
        pool: Pool,
        group_commit: GroupCommit,
        shutdown: CancellationToken,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let capacity = (group_commit.max_batch * group_commit.writers * 4).max(1);
        let (queue, receiver) = mpsc::channel(capacity);
        let writers = run_writers(pool.clone(), receiver, group_commit, shutdown);
        (Self { pool, queue }, writers)
    }

    /// Stores a delivery (and its outbox row) within `deadline`. Only an authenticated delivery
    /// ([`Verified`]) can reach the inbox. A failure is logged here — its text never leaves
    /// ingest — and returned as what the sender should be told.
    pub async fn accept(
        &self,
        verified: &Verified,
        delivery: NewDelivery<'_>,
        deadline: Duration,
    ) -> Result<Stored, Failure> {
        let DedupeKey::Always(key) = delivery.dedupe_key else {
            return attrsync_db::with_deadline(
                deadline,
                accept_unversioned(&self.pool, verified, &delivery),
            )
            .await
            .map_err(|e| logged(&e));
        };
        let (reply, outcome) = oneshot::channel();
        let queued = Queued {
            row: VersionedRow {
                delivery_id: delivery.delivery_id.to_owned(),
                dedupe_key: key.clone(),
                source: verified.source(),
                workspace_id: verified.workspace_id(),
                action: delivery.action.to_owned(),
                resource: delivery.resource.map(str::to_owned),
                disposition: delivery.disposition.as_str(),
                body: delivery.body.to_string(),
                publish: delivery.publish,
            },
            reply,
        };
        let stored = tokio::time::timeout(deadline, async {
            // Closed only after the writers stopped (shutdown): retryable, nothing stored.
            self.queue
                .send(queued)
                .await
                .map_err(|_| Failure::Retryable)?;
            outcome.await.unwrap_or(Err(Failure::Retryable))
        })
        .await;
        stored.unwrap_or_else(|_| {
            tracing::error!(?deadline, "storing a webhook took longer than its deadline");
            Err(Failure::Retryable)
        })
    }
}

fn logged(error: &DbError) -> Failure {
    tracing::error!(error = %error, "storing a webhook failed");
    error.class()
}

/// The group-commit writers: each takes what is queued (up to `max_batch`) and stores it with
/// one statement. After `shutdown` they keep draining until the queue stays empty for a second,
/// so requests the HTTP server is still finishing are answered.
async fn run_writers(
    pool: Pool,
    receiver: mpsc::Receiver<Queued>,
    group_commit: GroupCommit,
    shutdown: CancellationToken,
) {
    let receiver = tokio::sync::Mutex::new(receiver);
    let writer = async || {
        let mut batch = Vec::with_capacity(group_commit.max_batch);
        loop {
            {
                let mut receiver = receiver.lock().await;
                let first = tokio::select! {
                    first = receiver.recv() => first,
                    () = shutdown.cancelled() => {
                        tokio::time::timeout(Duration::from_secs(1), receiver.recv())
                            .await
                            .ok()
                            .flatten()
                    }
                };
                let Some(first) = first else { return };
                let mut batch_bytes = 0;
                let mut next = Some(first);
                while let Some(queued) = next.take() {
                    // A sender past its deadline was answered 503 and will retry: storing its
                    // delivery now would only be work for nobody.
                    if !queued.reply.is_closed() {
                        batch_bytes += queued.row.bytes();
                        batch.push(queued);
                    }
                    if batch.len() >= group_commit.max_batch || batch_bytes >= MAX_BATCH_BYTES {
                        break;
                    }
                    next = receiver.try_recv().ok();
                }
            }
            if batch.is_empty() {
                continue;
            }
            store_batch(
                &pool,
                std::mem::take(&mut batch),
                group_commit.statement_timeout,
            )
            .await;
        }
    };
    futures::future::join_all((0..group_commit.writers.max(1)).map(|_| writer())).await;
}

/// Stores one batch and answers each delivery in it. A batch the database refuses (an error
/// from a statement, not an outage or a timeout) is retried one delivery at a time, so one bad
/// delivery cannot fail its neighbours.
async fn store_batch(pool: &Pool, batch: Vec<Queued>, timeout: Duration) {
    metrics::histogram!("ingest_inbox_batch_size").record(batch.len() as f64);
    let (rows, replies): (Vec<VersionedRow>, Vec<_>) =
        batch.into_iter().map(|q| (q.row, q.reply)).unzip();
    let outcomes = match store_versioned(pool, &rows, timeout).await {
        // Refused for what it holds (not an outage or a timeout): find the delivery at fault.
        Err(e @ DbError::Query(_)) if rows.len() > 1 => {
            tracing::warn!(error = %e, rows = rows.len(), "a batch was refused; storing its deliveries one by one");
            let mut outcomes = Vec::with_capacity(rows.len());
            for row in rows.chunks(1) {
                outcomes.push(match store_versioned(pool, row, timeout).await {
                    Ok(mut one) => one.pop().unwrap_or(Err(Failure::Retryable)),
                    Err(e) => Err(logged(&e)),
                });
            }
            outcomes
        }
        Err(e) => vec![Err(logged(&e)); rows.len()],
        Ok(outcomes) => outcomes,
    };
    for (reply, outcome) in replies.into_iter().zip(outcomes) {
        // The sender may have given up (its deadline); its retry is recognised by its key.
        let _ = reply.send(outcome);
    }
}

/// For each delivery of a batch, the index of the first delivery with its dedupe key (pure):
/// only first deliveries are inserted; the others are repeats of them.
fn first_of_key<'a>(keys: impl Iterator<Item = &'a str>) -> Vec<usize> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    keys.enumerate()
        .map(|(i, key)| *seen.entry(key).or_insert(i))
        .collect()
}

/// The answers of a batch (pure), from which keys the insert took and the first delivery ids
/// the repeats were counted on: an inserted first delivery is new; every other one is a
/// duplicate of its key's stored delivery — or, if that row vanished in between (pruned), a
/// retryable failure, and its retry is accepted anew.
fn outcomes(
    rows: &[VersionedRow],
    first_of: &[usize],
    inserted: &HashSet<String>,
    counted: &HashMap<String, String>,
) -> Vec<Result<Stored, Failure>> {
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            if first_of[i] == i && inserted.contains(&row.dedupe_key) {
                return Ok(Stored::New {
                    delivery_id: row.delivery_id.clone(),
                });
            }
            counted
                .get(&row.dedupe_key)
                .map(|first| Stored::Duplicate {
                    delivery_id: first.clone(),
                })
                .ok_or(Failure::Retryable)
        })
        .collect()
}

#[derive(diesel::QueryableByName)]
struct InsertedKey {
    #[diesel(sql_type = Text)]
    dedupe_key: String,
}

#[derive(diesel::QueryableByName)]
struct CountedRepeat {
    #[diesel(sql_type = Text)]
    dedupe_key: String,
    #[diesel(sql_type = Text)]
    delivery_id: String,
}

/// A batch of versioned deliveries. One statement writes the inbox rows of the first delivery
/// of each key and the outbox rows of those it inserted: atomic as one statement is, one round
/// trip and one durable commit for the whole batch, prepared once per connection
/// ([`attrsync_db::prepared`]). Inbox rows go in key order, so concurrent
/// batches lock keys in the same order and cannot deadlock; outbox rows go in arrival order.
/// Only when some deliveries were repeats does a second statement count them on the stored rows.
async fn store_versioned(
    pool: &Pool,
    rows: &[VersionedRow],
    timeout: Duration,
) -> Result<Vec<Result<Stored, Failure>>, DbError> {
    // One deadline for the checkout and both statements.
    let deadline = std::time::Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(std::time::Instant::now());
    let first_of = first_of_key(rows.iter().map(|r| r.dedupe_key.as_str()));
    let firsts: Vec<&VersionedRow> = rows
        .iter()
        .enumerate()
        .filter(|(i, _)| first_of[*i] == *i)
        .map(|(_, row)| row)
        .collect();
    let mut conn = attrsync_db::with_deadline(left(), pool.get()).await?;
    let inserted: Vec<InsertedKey> = attrsync_db::with_deadline(
        left(),
        attrsync_db::prepared::sql(
            "WITH batch AS ( \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], \
                                      $5::text[], $6::text[], $7::text[], $8::text[], \
                                      $9::text[], $10::text[], $11::bytea[], $12::jsonb[]) \
                     WITH ORDINALITY AS b(delivery_id, dedupe_key, source, workspace_id, action, \
                                          resource, disposition, topic, body, message_key, \
                                          payload, headers, arrival) \
             ), first AS ( \
                 INSERT INTO inbox (delivery_id, dedupe_key, source, workspace_id, action, \
                                    resource, disposition, topic, body) \
                 SELECT delivery_id, dedupe_key, source, workspace_id, action, resource, \
                        disposition, topic, body::jsonb \
                 FROM batch ORDER BY dedupe_key \
                 ON CONFLICT (dedupe_key) DO NOTHING \
                 RETURNING dedupe_key \
             ), relayed AS ( \
                 INSERT INTO outbox (topic, message_key, payload, headers) \
                 SELECT b.topic, b.message_key, b.payload, b.headers \
                 FROM batch b JOIN first f USING (dedupe_key) \
                 WHERE b.topic IS NOT NULL ORDER BY b.arrival \
             ) \
             SELECT dedupe_key FROM first",
        )
        .bind::<Array<Text>, _>(
            firsts
                .iter()
                .map(|r| r.delivery_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(
            firsts
                .iter()
                .map(|r| r.dedupe_key.as_str())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(firsts.iter().map(|r| r.source).collect::<Vec<_>>())
        .bind::<Array<Nullable<BigInt>>, _>(
            firsts.iter().map(|r| r.workspace_id).collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(firsts.iter().map(|r| r.action.as_str()).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(
            firsts
                .iter()
                .map(|r| r.resource.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(firsts.iter().map(|r| r.disposition).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(
            firsts
                .iter()
                .map(|r| r.publish.as_ref().map(|m| m.topic.as_str()))
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(firsts.iter().map(|r| r.body.as_str()).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(
            firsts
                .iter()
                .map(|r| r.publish.as_ref().and_then(|m| m.message_key.as_deref()))
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Bytea>, _>(
            firsts
                .iter()
                .map(|r| r.publish.as_ref().map_or(&[][..], |m| m.payload.as_slice()))
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Jsonb>, _>(
            firsts
                .iter()
                .map(|r| r.publish.as_ref().map_or(&Value::Null, |m| &m.headers))
                .collect::<Vec<_>>(),
        )
        .load(&mut conn),
    )
    .await?;
    let inserted: HashSet<String> = inserted.into_iter().map(|k| k.dedupe_key).collect();
    let mut repeats: BTreeMap<&str, i32> = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        if first_of[i] != i || !inserted.contains(&row.dedupe_key) {
            *repeats.entry(row.dedupe_key.as_str()).or_default() += 1;
        }
    }
    let counted: HashMap<String, String> = if repeats.is_empty() {
        HashMap::new()
    } else {
        let counting = attrsync_db::with_deadline(
            left(),
            attrsync_db::prepared::sql(
                "UPDATE inbox i SET duplicates = i.duplicates + r.n \
                 FROM unnest($1::text[], $2::int4[]) AS r(dedupe_key, n) \
                 WHERE i.dedupe_key = r.dedupe_key \
                 RETURNING i.dedupe_key, i.delivery_id",
            )
            .bind::<Array<Text>, _>(repeats.keys().copied().collect::<Vec<_>>())
            .bind::<Array<Integer>, _>(repeats.values().copied().collect::<Vec<_>>())
            .load::<CountedRepeat>(&mut conn),
        )
        .await;
        match counting {
            Ok(counted) => counted
                .into_iter()
                .map(|c| (c.dedupe_key, c.delivery_id))
                .collect(),
            // The inserted deliveries are stored whatever happens here; only the repeats
            // are answered with the failure (their retries are recognised again).
            Err(e) => {
                let failure = logged(&e);
                return Ok(outcomes(rows, &first_of, &inserted, &HashMap::new())
                    .into_iter()
                    .map(|o| o.map_err(|_| failure))
                    .collect());
            }
        }
    };
    Ok(outcomes(rows, &first_of, &inserted, &counted))
}

/// An unversioned delivery, in one transaction: under a lock on its body's hash, a recent
/// repeat is counted on the first delivery; otherwise the inbox row and its outbox row.
async fn accept_unversioned(
    pool: &Pool,
    verified: &Verified,
    delivery: &NewDelivery<'_>,
) -> Result<Stored, DbError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(delivery_id: &str, dedupe_key: &str) -> VersionedRow {
        VersionedRow {
            delivery_id: delivery_id.to_owned(),
            dedupe_key: dedupe_key.to_owned(),
            source: "fyle",
            workspace_id: Some(1),
            action: "UPDATED".to_owned(),
            resource: Some("CATEGORY".to_owned()),
            disposition: "PUBLISHED",
            body: "{}".to_owned(),
            publish: None,
        }
    }

    #[test]
    fn a_key_repeated_in_a_batch_points_at_its_first_delivery() {
        assert_eq!(
            first_of_key(["a", "b", "a", "c", "b", "a"].into_iter()),
            vec![0, 1, 0, 3, 1, 0]
        );
    }

    #[test]
    fn an_inserted_first_delivery_is_new_and_its_in_batch_repeat_a_duplicate_of_it() {
        let rows = [row("D1", "k1"), row("D2", "k1")];
        let inserted = HashSet::from(["k1".to_owned()]);
        let counted = HashMap::from([("k1".to_owned(), "D1".to_owned())]);
        assert_eq!(
            outcomes(&rows, &[0, 0], &inserted, &counted),
            vec![
                Ok(Stored::New {
                    delivery_id: "D1".into()
                }),
                Ok(Stored::Duplicate {
                    delivery_id: "D1".into()
                }),
            ]
        );
    }

    #[test]
    fn a_delivery_the_insert_skipped_is_a_duplicate_of_the_stored_one() {
        let rows = [row("D2", "k1"), row("D3", "k2")];
        let inserted = HashSet::from(["k2".to_owned()]);
        let counted = HashMap::from([("k1".to_owned(), "D0".to_owned())]);
        assert_eq!(
            outcomes(&rows, &[0, 1], &inserted, &counted),
            vec![
                Ok(Stored::Duplicate {
                    delivery_id: "D0".into()
                }),
                Ok(Stored::New {
                    delivery_id: "D3".into()
                }),
            ]
        );
    }

    #[test]
    fn a_repeat_whose_stored_row_vanished_is_retryable_not_lost() {
        let rows = [row("D2", "k1")];
        assert_eq!(
            outcomes(&rows, &[0], &HashSet::new(), &HashMap::new()),
            vec![Err(Failure::Retryable)]
        );
    }
}
