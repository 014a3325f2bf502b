//! A rate limit that every replica of every service obeys together: a token bucket in
//! PostgreSQL (`attrsync_shared.rate_buckets`, created by the platform migrations in a schema
//! all services of the database share — a partner's budget is the partner's, so fyle-sync and
//! import-to-fyle draw on one bucket per Fyle org).
//!
//! [`reserve`] takes one token in a single statement: the bucket is refilled for the time since
//! its last use (at `rate` per second, up to `burst`) and one token is taken — the balance may
//! go negative, which reserves a later slot: the caller waits `-balance / rate` seconds before
//! making its call. So N replicas calling at once are spaced exactly as one caller would be,
//! with one round trip each and no lock held while waiting. The bucket is soft state: its
//! commits are asynchronous (no disk flush per call). A database crash can lose the
//! reservations of its last moments (PostgreSQL's `wal_writer_delay`, 200 ms by default, plus
//! what was waiting to be flushed); after it, those slots are handed out again, so callers may
//! start the lost reservations plus up to `burst` calls early, once.
//!
//! [`SharedLimiter`] is the same bucket as an HTTP client's [`RateLimiter`] (one bucket per
//! partner key, e.g. a Fyle org or a QBO realm), so an API client paces itself across replicas
//! without knowing about PostgreSQL.
//!
//! Failure policy: with the database unreachable the caller gets the error and must not call
//! (fail closed: exceeding a partner's limit gets the integration blocked).

use std::time::Duration;

use attrsync_http_retry::{BoxFuture, RateLimiter};
use diesel::sql_types::{Double, Text};
use diesel_async::RunQueryDsl;

use crate::{DbError, Pool};

#[derive(diesel::QueryableByName)]
struct Balance {
    #[diesel(sql_type = Double)]
    tokens: f64,
}

/// Takes a token from the bucket `key` (`rate` per second, at most `burst` saved up) and
/// returns how long to wait before using it.
pub async fn reserve(pool: &Pool, key: &str, rate: f64, burst: f64) -> Result<Duration, DbError> {
    let mut conn = pool.get().await?;
    // The bucket is soft state: its commit is not waited for (`synchronous_commit` off for
    // this statement's transaction), so pacing a call costs no disk flush (see the module doc
    // for what a database crash costs). Each placeholder appears once: `excluded.tokens + 1`
    // is the burst.
    let balance: Balance = crate::prepared::sql(
        "INSERT INTO attrsync_shared.rate_buckets AS b (key, tokens, refreshed_at) \
         SELECT $1, $2 - 1, now() \
         WHERE set_config('synchronous_commit', 'off', true) IS NOT NULL \
         ON CONFLICT (key) DO UPDATE SET \
             tokens = LEAST(excluded.tokens + 1, \
                            b.tokens + EXTRACT(EPOCH FROM now() - b.refreshed_at) * $3) - 1, \
             refreshed_at = now() \
         RETURNING tokens",
    )
    .bind::<Text, _>(key)
    .bind::<Double, _>(burst)
    .bind::<Double, _>(rate)
    .get_result(&mut conn)
    .await?;
    Ok(wait_for(balance.tokens, rate))
}

/// How long a caller whose reservation left `balance` tokens waits (pure).
pub fn wait_for(balance: f64, rate: f64) -> Duration {
    if balance >= 0.0 || rate <= 0.0 {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(-balance / rate)
    }
}

/// A [`RateLimiter`] over [`reserve`]: `rate` requests per second per key, at most `burst` at
/// once, for every replica together. Keys are namespaced by `prefix` (`fyle:<org>`,
/// `qbo:<realm>`).
pub struct SharedLimiter {
    pool: Pool,
    prefix: &'static str,
    rate: f64,
    burst: f64,
}

impl SharedLimiter {
    /// A limiter of `rate` per second and `burst`, on buckets named `<prefix>:<key>`.
    pub fn new(pool: Pool, prefix: &'static str, rate: f64, burst: f64) -> Self {
        Self {
            pool,
            prefix,
            rate,
            burst,
        }
    }
}

impl std::fmt::Debug for SharedLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimiter")
            .field("prefix", &self.prefix)
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

impl RateLimiter for SharedLimiter {
    fn acquire<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let bucket = format!("{}:{key}", self.prefix);
            let wait = reserve(&self.pool, &bucket, self.rate, self.burst)
                .await
                .map_err(|e| e.to_string())?;
            tokio::time::sleep(wait).await;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_negative_balance_is_the_wait_for_the_reserved_slot() {
        assert_eq!(wait_for(3.0, 10.0), Duration::ZERO);
        assert_eq!(wait_for(0.0, 10.0), Duration::ZERO);
        assert_eq!(wait_for(-1.0, 10.0), Duration::from_millis(100));
        assert_eq!(wait_for(-5.0, 10.0), Duration::from_millis(500));
    }
}
