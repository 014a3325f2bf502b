//! Request permits: pacing **and** a cap on requests in flight, per key.
//!
//! Some partners limit both how often and how many at once: QBO allows 500 requests per minute
//! and 10 concurrent requests per realm (reference §3.7), and answers 429 past either. A client
//! awaits a [`RequestLimiter`] before every data call (retries included) and holds the [`Permit`]
//! until it has read the whole answer; dropping the permit frees the in-flight slot.
//!
//! [`InProcessPermits`] caps requests in flight with one tokio semaphore per key and paces them
//! with any [`RateLimiter`] (in process: [`crate::InProcessLimiter`]; in a service: its shared
//! PostgreSQL bucket). The slot is taken **before** the rate token, so the token is spent when the
//! request really leaves: a request that waited for a slot cannot go out in a burst with tokens
//! that were granted while it waited. The cap is per process — replicas sharing a realm use a
//! shared implementation of the trait (`attrsync_db::shared_permits`).
//!
//! Failure policy: **closed**. `Err` from [`RequestLimiter::acquire`] means no permit, and the
//! client does not make the call.

use std::{
    collections::HashMap,
    fmt,
    num::NonZeroU32,
    sync::{Arc, Mutex},
};

use tokio::sync::Semaphore;

use crate::limiter::{BoxFuture, RateLimiter, Unlimited};

/// Permission for one request, held until its answer has been read. Whatever it holds (a
/// semaphore slot, a lease) is released when it is dropped.
pub struct Permit {
    held: Option<Box<dyn Send + Sync>>,
}

impl Permit {
    /// A permit that releases `guard` (by dropping it) when the request is done.
    pub fn holding(guard: impl Send + Sync + 'static) -> Self {
        Self {
            held: Some(Box::new(guard)),
        }
    }

    /// A permit that holds nothing (no in-flight cap).
    pub fn free() -> Self {
        Self { held: None }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("holds", &self.held.is_some())
            .finish()
    }
}

/// Grants permission for one request of a key (a tenant: the QBO realm), pacing it and capping
/// the requests in flight.
pub trait RequestLimiter: Send + Sync + fmt::Debug {
    /// Waits until one request for `key` may be sent; the request must hold the returned permit
    /// until its answer has been read. `Err` means the limiter itself failed; the call is then
    /// not made.
    fn acquire<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Permit, String>>;
}

impl RequestLimiter for Unlimited {
    fn acquire<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<Permit, String>> {
        Box::pin(async { Ok(Permit::free()) })
    }
}

/// At most `max_in_flight` requests per key at once in this process, each paced by `rate`.
pub struct InProcessPermits {
    rate: Arc<dyn RateLimiter>,
    max_in_flight: NonZeroU32,
    /// One semaphore per key seen (keys are tenants: a bounded set).
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl fmt::Debug for InProcessPermits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessPermits")
            .field("rate", &self.rate)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

impl InProcessPermits {
    /// `max_in_flight` requests at once per key, paced by `rate`.
    pub fn new(rate: Arc<dyn RateLimiter>, max_in_flight: NonZeroU32) -> Self {
        Self {
            rate,
            max_in_flight,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn semaphore(&self, key: &str) -> Arc<Semaphore> {
        // A poisoned map is still a valid map: recover it rather than fail every later call.
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = usize::try_from(self.max_in_flight.get()).unwrap_or(usize::MAX);
        Arc::clone(
            slots
                .entry(key.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(n))),
        )
    }
}

impl RequestLimiter for InProcessPermits {
    fn acquire<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Permit, String>> {
        Box::pin(async move {
            let slot = self
                .semaphore(key)
                .acquire_owned()
                .await
                .map_err(|e| format!("in-flight limiter closed: {e}"))?;
            self.rate.acquire(key).await?;
            Ok(Permit::holding(slot))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicU32, Ordering},
        time::{Duration, Instant},
    };

    use super::*;
    use crate::InProcessLimiter;

    #[tokio::test]
    async fn in_flight_requests_are_capped_per_key_until_permits_drop() {
        let l = InProcessPermits::new(Arc::new(Unlimited), NonZeroU32::new(2).expect("2"));
        let a = l.acquire("r1").await.expect("first");
        let _b = l.acquire("r1").await.expect("second");
        let third = tokio::time::timeout(Duration::from_millis(50), l.acquire("r1")).await;
        assert!(third.is_err(), "a third request of r1 waits");
        let _other = tokio::time::timeout(Duration::from_millis(50), l.acquire("r2"))
            .await
            .expect("another key has its own slots")
            .expect("permit");
        drop(a);
        tokio::time::timeout(Duration::from_millis(50), l.acquire("r1"))
            .await
            .expect("a dropped permit frees its slot")
            .expect("permit");
    }

    #[tokio::test]
    async fn permits_are_paced_by_the_rate_limiter() {
        let rate = InProcessLimiter::evenly_spaced(NonZeroU32::new(20).expect("20"), 0.0);
        let l = InProcessPermits::new(Arc::new(rate), NonZeroU32::new(10).expect("10"));
        let started = Instant::now();
        for _ in 0..4 {
            drop(l.acquire("r").await.expect("permit"));
        }
        assert!(
            started.elapsed() >= Duration::from_millis(140),
            "3 gaps of 50 ms"
        );
    }

    /// A rate limiter whose store is down.
    #[derive(Debug, Default)]
    struct Down(AtomicU32);

    impl RateLimiter for Down {
        fn acquire<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async move {
                self.0.fetch_add(1, Ordering::Relaxed);
                Err("bucket store unavailable".to_owned())
            })
        }
    }

    #[tokio::test]
    async fn a_failing_rate_limiter_fails_closed_and_frees_the_slot() {
        let l = InProcessPermits::new(Arc::new(Down::default()), NonZeroU32::MIN);
        for _ in 0..3 {
            let err = l.acquire("r").await.expect_err("no permit without a token");
            assert!(err.contains("unavailable"), "{err}");
        }
    }
}
