//! Client-side rate limiting: the client awaits a [`RateLimiter`] permit before **every** call to
//! the data host (retries included), keyed by the org.
//!
//! Fyle allows 10 requests/second (reference §1.3: per IP, plus connection-level DoS protection;
//! the sandbox enforces it on the data host with a sliding one-second window, answering 429
//! without `Retry-After`). Staying under it is cheaper than recovering from 429s, so the client
//! paces itself; 429s that still happen are retried by the backoff of [`crate::RetryPolicy`].
//! The accounts host (token, cluster) is not paced: the documented limit is the data API's.
//!
//! [`InProcessLimiter`] keeps one bucket per org in this process (governor, GCRA), spaced evenly
//! with a small headroom (see [`InProcessLimiter::fyle_default`]). It keeps one process honest but
//! not several replicas: the PostgreSQL-backed token lease that fyle-sync will provide implements
//! this same trait, so every replica draws from one budget per org; the client does not change.
//!
//! Failure policy: **closed**. A limiter that cannot answer (a lease store that is down) makes the
//! call fail with [`crate::Error::Limiter`] (transient) instead of calling Fyle unpaced.

use std::{fmt, future::Future, num::NonZeroU32, pin::Pin, time::Duration};

use governor::{DefaultKeyedRateLimiter, Quota};

/// A boxed future, as the object-safe [`RateLimiter`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Grants permission for one data-host request of an org.
pub trait RateLimiter: Send + Sync + fmt::Debug {
    /// Waits until one request for `key` may be sent. `key` is the org id. Before the org is known
    /// — the `my_profile` call of [`crate::FyleClient::connect`] — the key is the OAuth client id,
    /// and connect then acquires once more for the org to charge that call to the org's budget.
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
        let headroom = if headroom.is_finite() {
            headroom.clamp(0.0, 10.0)
        } else {
            0.0
        };
        let period = Duration::from_secs(1)
            .div_f64(f64::from(per_second.get()))
            .mul_f64(1.0 + headroom)
            .max(Duration::from_micros(1));
        let quota = Quota::with_period(period).unwrap_or_else(|| Quota::per_second(per_second));
        Self::new(quota.allow_burst(NonZeroU32::MIN))
    }

    /// Fyle's 10 requests/second per org, one request every 105 ms. Evenly spaced because Fyle
    /// counts a sliding second at its end: a client burst of 10 followed by GCRA's steady rate
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

/// No pacing at all (benchmarks against a sandbox whose limit is off, tests).
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
        let l = InProcessLimiter::evenly_spaced(NonZeroU32::new(20).expect("20"), 0.0);
        let started = Instant::now();
        for _ in 0..5 {
            l.acquire("orA").await.expect("permit");
        }
        let a = started.elapsed();
        assert!(a >= Duration::from_millis(190), "4 gaps of 50 ms: {a:?}");
        let other = Instant::now();
        l.acquire("orB").await.expect("permit");
        assert!(
            other.elapsed() < Duration::from_millis(30),
            "another org has its own bucket"
        );
    }
}
