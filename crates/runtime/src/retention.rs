//! Retention of the tables every service shares.
//!
//! Every `retention.interval` (when `retention.enabled`, the default): delete
//! `processed_events` rows older than `retention.processed_events`, in batches so no statement
//! holds locks for long; count `outbox_rejected` rows into the `outbox_rejected_rows` gauge
//! and log them at ERROR while any remain (they wait for an operator); report the outbox's
//! depth in `outbox_pending_rows`.
//!
//! Safe with several replicas: the job takes a session-free advisory *try*-lock per schema
//! inside each batch's transaction, so replicas do not repeat each other's work, and a batch
//! that races another is harmless (deleting a deleted row is a no-op).
//!
//! Failure policy: a failed run (database down) is logged and retried at the next interval;
//! nothing else waits for it.

use std::{future::Future, time::Duration};

use attrsync_config::RetentionConfig;
use attrsync_db::Pool;
use diesel::sql_types::{BigInt, Interval};
use diesel_async::{AsyncConnection, RunQueryDsl};
use tokio_util::sync::CancellationToken;

const BATCH: i64 = 5_000;

/// Runs `delete_sql` — a DELETE of at most `$2` rows older than `now() - $1` — until a batch
/// deletes fewer than `$2`, each batch in its own transaction under the job's try-lock.
/// Returns the rows deleted (0 when another replica holds the lock).
pub async fn prune(
    pool: &Pool,
    lock_name: &str,
    delete_sql: &'static str,
    older_than: Duration,
) -> Result<u64, attrsync_db::DbError> {
    let lock_key = attrsync_db::advisory_key(&format!("retention:{lock_name}"));
    let cutoff = diesel::pg::data_types::PgInterval::from_microseconds(
        i64::try_from(older_than.as_micros()).unwrap_or(i64::MAX),
    );
    let mut total = 0;
    loop {
        let mut conn = pool.get().await?;
        let deleted = conn
            .transaction::<Option<usize>, diesel::result::Error, _>(async |conn| {
                let locked: Locked =
                    diesel::sql_query("SELECT pg_try_advisory_xact_lock($1) AS locked")
                        .bind::<BigInt, _>(lock_key)
                        .get_result(conn)
                        .await?;
                if !locked.locked {
                    return Ok(None);
                }
                diesel::sql_query(delete_sql)
                    .bind::<Interval, _>(cutoff)
                    .bind::<BigInt, _>(BATCH)
                    .execute(conn)
                    .await
                    .map(Some)
            })
            .await?;
        match deleted {
            None => return Ok(total),
            Some(n) => {
                total += n as u64;
                if (n as i64) < BATCH {
                    return Ok(total);
                }
            }
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Locked {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    locked: bool,
}

const PRUNE_PROCESSED_EVENTS: &str = "DELETE FROM processed_events WHERE event_id IN ( \
     SELECT event_id FROM processed_events WHERE processed_at < now() - $1 \
     ORDER BY processed_at LIMIT $2)";

/// Runs `job` every `config.interval` until `shutdown`.
pub async fn every<F, Fut>(config: RetentionConfig, shutdown: CancellationToken, mut job: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    if !config.enabled {
        return shutdown.cancelled().await;
    }
    loop {
        job().await;
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(config.interval) => {}
        }
    }
}

/// The platform tables' retention for one service.
pub(crate) async fn run(
    pool: Pool,
    schema: String,
    config: RetentionConfig,
    shutdown: CancellationToken,
) {
    let older_than = config.processed_events;
    every(config, shutdown, || async {
        match prune(&pool, &format!("{schema}.processed_events"), PRUNE_PROCESSED_EVENTS, older_than).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "pruned processed_events"),
            Err(e) => tracing::warn!(error = %e, "pruning processed_events failed; retried at the next interval"),
        }
        match attrsync_db::outbox::pending(&pool).await {
            #[allow(clippy::cast_precision_loss)]
            Ok(rows) => metrics::gauge!("outbox_pending_rows", "schema" => schema.clone()).set(rows as f64),
            Err(e) => tracing::warn!(error = %e, "counting the outbox failed"),
        }
        match attrsync_db::outbox::rejected(&pool).await {
            Ok(rows) => {
                #[allow(clippy::cast_precision_loss)]
                metrics::gauge!("outbox_rejected_rows", "schema" => schema.clone()).set(rows as f64);
                if rows > 0 {
                    tracing::error!(rows, schema, "outbox_rejected holds messages Kafka refused; replay or discard them");
                }
            }
            Err(e) => tracing::warn!(error = %e, "counting outbox_rejected failed"),
        }
    })
    .await;
}
