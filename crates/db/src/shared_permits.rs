//! A cap on requests in flight that every replica obeys together: a partner's concurrency limit
//! (QBO: 10 requests at once per realm, reference §3.7) is the partner's, so replicas cannot
//! each take a share and hope the shares add up.
//!
//! Each key (a QBO realm) has `max_in_flight` numbered slots in `attrsync_shared.in_flight_slots`
//! (platform migration `2026-12-10-000003_in_flight_slots`). [`SharedPermits::acquire`] claims a
//! free one in one statement — a slot nobody holds, or whose holder's lease ran out — under
//! `FOR UPDATE SKIP LOCKED`, so two replicas never claim the same slot and never wait on each
//! other's row locks. The claim writes a holder token unique to the acquisition and an expiry
//! `lease` from now. Within a process, requests first queue on a local semaphore of
//! `max_in_flight` per key, so at most that many of a replica's requests ask the database at
//! once; when every slot is busy such a request polls again, waiting `poll` and doubling up to
//! ten times that (no lock held while waiting). Dropping the permit frees the slot (a
//! background statement that matches the holder token, so a release that arrives after the
//! slot expired and was claimed again frees nothing); a request cancelled while its claim was
//! in flight releases whatever its token may have claimed a moment later. After the slot, the
//! shared rate limiter is awaited — slot first, then token, as in
//! [`attrsync_http_retry::InProcessPermits`], so the token is spent when the request leaves.
//!
//! Every replica must use the same `max_in_flight` for a key: slots are numbered, and a
//! replica configured higher would also claim the slots above the others' cap.
//!
//! Failure policy: **closed** — with the database unreachable `acquire` fails and the caller
//! does not make the call (exceeding a partner's limit gets the integration blocked). A holder
//! that crashed, or a release that could not be written, keeps its slot until its lease ends:
//! capacity shrinks for at most `lease`, the limit is never exceeded. The lease must therefore
//! outlast the longest request (the clients' timeouts are 30–60 s).

use std::{
    collections::{HashMap, HashSet},
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::Semaphore;

use attrsync_http_retry::{BoxFuture, Permit, RateLimiter, RequestLimiter};
use diesel::sql_types::{Double, Integer, Text};
use diesel_async::RunQueryDsl;

use crate::{DbError, Pool};

#[derive(diesel::QueryableByName)]
struct Claimed {
    #[diesel(sql_type = Integer)]
    slot: i32,
}

/// Claims a free slot of `key` (slots `0..max_in_flight`) for `holder` until `lease` from now;
/// `None` when every slot is held.
pub async fn claim(
    pool: &Pool,
    key: &str,
    max_in_flight: NonZeroU32,
    holder: &str,
    lease: Duration,
) -> Result<Option<i32>, DbError> {
    let mut conn = pool.get().await?;
    let claimed: Vec<Claimed> = diesel::sql_query(
        "UPDATE attrsync_shared.in_flight_slots s \
         SET holder = $3, expires_at = now() + make_interval(secs => $4) \
         FROM (SELECT key, slot FROM attrsync_shared.in_flight_slots \
               WHERE key = $1 AND slot < $2 AND (holder IS NULL OR expires_at <= now()) \
               ORDER BY slot LIMIT 1 FOR UPDATE SKIP LOCKED) free \
         WHERE s.key = free.key AND s.slot = free.slot \
         RETURNING s.slot",
    )
    .bind::<Text, _>(key)
    .bind::<Integer, _>(slot_count(max_in_flight))
    .bind::<Text, _>(holder)
    .bind::<Double, _>(lease.as_secs_f64())
    .load(&mut conn)
    .await?;
    Ok(claimed.into_iter().next().map(|c| c.slot))
}

/// Creates the slots of `key` that do not exist yet (idempotent).
pub async fn ensure_slots(
    pool: &Pool,
    key: &str,
    max_in_flight: NonZeroU32,
) -> Result<(), DbError> {
    let mut conn = pool.get().await?;
    diesel::sql_query(
        "INSERT INTO attrsync_shared.in_flight_slots (key, slot) \
         SELECT $1, n FROM generate_series(0, $2 - 1) AS n \
         ON CONFLICT DO NOTHING",
    )
    .bind::<Text, _>(key)
    .bind::<Integer, _>(slot_count(max_in_flight))
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// Frees every slot of `key` that `holder` holds (a cancelled claim's cleanup). Returns how
/// many it freed.
pub async fn release_holder(pool: &Pool, key: &str, holder: &str) -> Result<usize, DbError> {
    let mut conn = pool.get().await?;
    let freed = diesel::sql_query(
        "UPDATE attrsync_shared.in_flight_slots SET holder = NULL, expires_at = NULL \
         WHERE key = $1 AND holder = $2",
    )
    .bind::<Text, _>(key)
    .bind::<Text, _>(holder)
    .execute(&mut conn)
    .await?;
    Ok(freed)
}

/// Frees `slot` of `key` if `holder` still holds it. Returns whether it did.
pub async fn release(pool: &Pool, key: &str, slot: i32, holder: &str) -> Result<bool, DbError> {
    let mut conn = pool.get().await?;
    let freed = diesel::sql_query(
        "UPDATE attrsync_shared.in_flight_slots SET holder = NULL, expires_at = NULL \
         WHERE key = $1 AND slot = $2 AND holder = $3",
    )
    .bind::<Text, _>(key)
    .bind::<Integer, _>(slot)
    .bind::<Text, _>(holder)
    .execute(&mut conn)
    .await?;
    Ok(freed == 1)
}

fn slot_count(max_in_flight: NonZeroU32) -> i32 {
    i32::try_from(max_in_flight.get()).unwrap_or(i32::MAX)
}

/// A [`RequestLimiter`]: at most `max_in_flight` requests per key in flight across every
/// replica, each paced by `rate` (the shared bucket). Keys are namespaced by `prefix`
/// (`qbo:<realm>`).
pub struct SharedPermits {
    pool: Pool,
    prefix: &'static str,
    rate: Arc<dyn RateLimiter>,
    max_in_flight: NonZeroU32,
    lease: Duration,
    poll: Duration,
    /// Keys whose slots this process has created.
    seeded: Mutex<HashSet<String>>,
    /// This process's queue per key in front of the database (`max_in_flight` permits).
    local: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl std::fmt::Debug for SharedPermits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPermits")
            .field("prefix", &self.prefix)
            .field("rate", &self.rate)
            .field("max_in_flight", &self.max_in_flight)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl SharedPermits {
    /// `max_in_flight` requests per key at once for every replica, paced by `rate`; a slot is
    /// leased for `lease` (longer than any request) and a full key is polled every `poll`.
    pub fn new(
        pool: Pool,
        prefix: &'static str,
        rate: Arc<dyn RateLimiter>,
        max_in_flight: NonZeroU32,
        lease: Duration,
        poll: Duration,
    ) -> Self {
        Self {
            pool,
            prefix,
            rate,
            max_in_flight,
            lease,
            poll,
            seeded: Mutex::new(HashSet::new()),
            local: Mutex::new(HashMap::new()),
        }
    }

    fn local_queue(&self, key: &str) -> Arc<Semaphore> {
        let n = usize::try_from(self.max_in_flight.get()).unwrap_or(usize::MAX);
        let mut queues = self
            .local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(
            queues
                .entry(key.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(n))),
        )
    }

    /// Claims a slot of `key`, waiting while every slot is held.
    async fn slot(&self, key: &str) -> Result<SlotGuard, DbError> {
        let name = format!("{}:{key}", self.prefix);
        let holder = ulid::Ulid::new().to_string();
        let seeded = self
            .seeded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&name);
        if !seeded {
            ensure_slots(&self.pool, &name, self.max_in_flight).await?;
            self.seeded
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(name.clone());
        }
        let mut pending = PendingClaim {
            pool: self.pool.clone(),
            key: name.clone(),
            holder: holder.clone(),
            in_flight: false,
        };
        let mut wait = self.poll;
        loop {
            pending.in_flight = true;
            let claimed = claim(&self.pool, &name, self.max_in_flight, &holder, self.lease).await?;
            pending.in_flight = false;
            if let Some(slot) = claimed {
                return Ok(SlotGuard {
                    pool: self.pool.clone(),
                    key: name,
                    slot,
                    holder,
                });
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(self.poll * 10);
        }
    }
}

impl RequestLimiter for SharedPermits {
    fn acquire<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Permit, String>> {
        Box::pin(async move {
            let queued = self
                .local_queue(key)
                .acquire_owned()
                .await
                .map_err(|e| format!("in-flight queue closed: {e}"))?;
            let slot = self.slot(key).await.map_err(|e| e.to_string())?;
            // The guards free the slot and the queue place if the rate limiter fails.
            self.rate.acquire(key).await?;
            Ok(Permit::holding((queued, slot)))
        })
    }
}

/// A claim being made: if the request is dropped while its claim statement runs, the statement
/// may still commit, so whatever the holder token claimed is released a moment later.
struct PendingClaim {
    pool: Pool,
    key: String,
    holder: String,
    in_flight: bool,
}

/// How long a cancelled claim's cleanup waits for the statement it interrupted.
const CANCELLED_CLAIM_SETTLE: Duration = Duration::from_secs(1);

impl Drop for PendingClaim {
    fn drop(&mut self) {
        if !self.in_flight {
            return;
        }
        let (pool, key, holder) = (
            self.pool.clone(),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.holder),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                tokio::time::sleep(CANCELLED_CLAIM_SETTLE).await;
                if let Err(e) = release_holder(&pool, &key, &holder).await {
                    tracing::warn!(key, error = %e, "could not free a cancelled claim's slot; its lease frees it");
                }
            });
        }
    }
}

/// A claimed slot; dropping it frees the slot in the background.
struct SlotGuard {
    pool: Pool,
    key: String,
    slot: i32,
    holder: String,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let (pool, key, holder) = (
            self.pool.clone(),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.holder),
        );
        let slot = self.slot;
        // No runtime (a process shutting down): the lease frees the slot.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = release(&pool, &key, slot, &holder).await {
                    tracing::warn!(key, slot, error = %e, "could not free an in-flight slot; its lease frees it");
                }
            });
        }
    }
}
