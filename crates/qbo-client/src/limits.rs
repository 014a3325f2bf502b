//! QBO's per-realm limits (reference §3.7) and the in-process limiter that keeps to them.
//!
//! Intuit allows **500 requests per minute** and **10 concurrent requests** per realm (per app),
//! and answers 429 past either (older answers: 503). The client awaits a
//! [`RequestLimiter`] permit before every data call, retries included, keyed by the realm, and
//! holds it until the answer is read. [`in_process`] keeps one process within both limits; a
//! service with several replicas on one realm plugs a shared implementation of the same trait
//! (qbo-sync: `attrsync_db::shared_permits`, in-flight slots and a token bucket in PostgreSQL).
//! 429s that still happen (another app) are retried with backoff.
//!
//! Failure policy: closed — a limiter error fails the call ([`crate::Error::Limiter`]).

use std::{num::NonZeroU32, sync::Arc, time::Duration};

use attrsync_http_retry::{InProcessLimiter, InProcessPermits, RequestLimiter};

/// Requests per minute per realm.
pub const REQUESTS_PER_MINUTE: u32 = 500;
/// Requests in flight per realm.
pub const MAX_IN_FLIGHT: u32 = 10;
/// Spacing headroom of the in-process limiter: 5 % slower than the limit, so requests sent
/// exactly at the limit's pace do not arrive faster than it after network jitter.
pub const HEADROOM: f64 = 0.05;

/// 500/minute evenly spaced (one request every 126 ms with the headroom, ≈476/minute) and at
/// most 10 in flight, per realm, in this process.
pub fn in_process() -> InProcessPermits {
    in_process_with(
        NonZeroU32::new(REQUESTS_PER_MINUTE).unwrap_or(NonZeroU32::MIN),
        Duration::from_secs(60),
        NonZeroU32::new(MAX_IN_FLIGHT).unwrap_or(NonZeroU32::MIN),
    )
}

/// `count` requests per `period`, evenly spaced with [`HEADROOM`], and `max_in_flight` at once,
/// per realm (tests with a shortened window, replicas with a share of the limits).
pub fn in_process_with(
    count: NonZeroU32,
    period: Duration,
    max_in_flight: NonZeroU32,
) -> InProcessPermits {
    let rate = InProcessLimiter::evenly_spaced_per(count, period, HEADROOM);
    InProcessPermits::new(Arc::new(rate), max_in_flight)
}

/// The default limiter as a trait object.
pub(crate) fn default_limiter() -> Arc<dyn RequestLimiter> {
    Arc::new(in_process())
}
