//! Client-side pacing: a client awaits a [`RateLimiter`] permit before **every** call to a
//! partner's data API (retries included), keyed by the tenant (Fyle org, QBO realm).
//!
//! Staying under a partner's limit is cheaper than recovering from 429s, so the clients pace
//! themselves; 429s that still happen are retried by the backoff of [`crate::RetryPolicy`].
//!
//! [`InProcessLimiter`] keeps one GCRA bucket per key in this process (governor), evenly spaced
//! with a small headroom (see [`InProcessLimiter::evenly_spaced_per`]). It keeps one process
//! honest but not several replicas: a service that runs replicas implements this same trait over
//! a shared store (fyle-sync: the PostgreSQL token bucket), so every replica draws from one budget
//! per key; the clients do not change.
//!
//! Failure policy: **closed**. A limiter that cannot answer (a shared store that is down) returns
//! `Err`, and the client fails the call without sending it instead of calling the partner
//! unpaced.

use std::{fmt, future::Future, num::NonZeroU32, pin::Pin, time::Duration};

use governor::{DefaultKeyedRateLimiter, Quota};

/// A boxed future, as the object-safe [`RateLimiter`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Grants permission for one data-API request of a tenant.
pub trait RateLimiter: Send + Sync + fmt::Debug {
    /// Waits until one request for `key` may be sent. `key` is the tenant the partner counts
    /// (the Fyle client passes the org id — or, before the org is known, the OAuth client id).
    /// `Err` means the limiter itself failed; the call is then not made.
    fn acquire<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), String>>;
}

/// One GCRA bucket per key, in this process.
pub struct InProcessLimiter {
    inner: DefaultKeyedRateLimiter<String>,
    quota: Quota,
}

impl fmt::Debug for InProcessLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessLimiter")
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

impl InProcessLimiter {
    /// A limiter with `quota` per key.
    pub fn new(quota: Quota) -> Self {
        Self {
            inner: governor::RateLimiter::keyed(quota),
            quota,
        }
    }

    /// `per_second` requests per second and key, evenly spaced (burst 1), with `headroom`
    /// (0.05 = 5 %) added to the spacing.
    pub fn evenly_spaced(per_second: NonZeroU32, headroom: f64) -> Self {
        Self::evenly_spaced_per(per_second, Duration::from_secs(1), headroom)
    }

    /// `count` requests per `period` and key, evenly spaced (burst 1: one request every
    /// `period / count`), with `headroom` (0.05 = 5 %) added to the spacing. Evenly spaced
    /// because partners count a sliding window: a client burst followed by GCRA's steady rate
    /// would put `count + burst` arrivals in one window.
    pub fn evenly_spaced_per(count: NonZeroU32, period: Duration, headroom: f64) -> Self {
        let headroom = if headroom.is_finite() {
            headroom.clamp(0.0, 10.0)
        } else {
            0.0
        };
        let spacing = period
            .div_f64(f64::from(count.get()))
            .mul_f64(1.0 + headroom)
            .max(Duration::from_micros(1));
        let quota = Quota::with_period(spacing).unwrap_or_else(|| Quota::per_second(count));
        Self::new(quota.allow_burst(NonZeroU32::MIN))
    }

    /// Fyle's 10 requests/second per org (reference §1.3), one request every 105 ms — the Fyle
    /// client's default, kept here because it is a constructor of this type. Evenly spaced because
    /// Fyle counts a sliding second at its end: a client burst of 10 followed by GCRA's steady rate
    /// would put 11 arrivals in one second. The 5 % headroom absorbs scheduling and network
    /// jitter — two requests sent exactly 100 ms apart can arrive 99 ms apart — so paced
    /// requests are not answered 429; it costs 5 % of the maximum throughput.
    pub fn fyle_default() -> Self {
        Self::evenly_spaced(NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN), 0.05)
    }
}

impl RateLimiter for InProcessLimiter {
    fn acquire<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.inner.until_key_ready(&key.to_owned()).await;
            Ok(())
        })
    }
}

/// No pacing and no cap at all (benchmarks against a sandbox whose limit is off, tests). Also a
/// [`crate::RequestLimiter`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Unlimited;

impl RateLimiter for Unlimited {
    fn acquire<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[tokio::test]
    async fn permits_are_spaced_per_key_and_keys_are_independent() {
        // Gaps of 250 ms, so the bound on the other key leaves a busy machine 200 ms of slack.
        let l = InProcessLimiter::evenly_spaced(NonZeroU32::new(4).expect("4"), 0.0);
        let started = Instant::now();
        for _ in 0..3 {
            l.acquire("orA").await.expect("permit");
        }
        let a = started.elapsed();
        assert!(a >= Duration::from_millis(490), "2 gaps of 250 ms: {a:?}");
        let other = Instant::now();
        l.acquire("orB").await.expect("permit");
        assert!(
            other.elapsed() < Duration::from_millis(200),
            "another key has its own bucket"
        );
    }

    #[tokio::test]
    async fn a_count_per_period_is_spread_over_the_period() {
        // 600 per minute = one every 100 ms
        let l = InProcessLimiter::evenly_spaced_per(
            NonZeroU32::new(600).expect("600"),
            Duration::from_secs(60),
            0.0,
        );
        let started = Instant::now();
        for _ in 0..4 {
            l.acquire("realm").await.expect("permit");
        }
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_secs(2),
            "3 gaps of 100 ms (a wrong period would give 3 s or 0): {took:?}"
        );
    }
}
