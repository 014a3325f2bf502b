//! What attrsync's partner-API clients (`attrsync-fyle-client`, `attrsync-qbo-client`) share, so
//! neither keeps its own copy: the retry schedule and client-side limits. No HTTP here — each
//! client owns its request loop and decides *what* is retried; this crate decides *how long* to
//! wait and *whether a call may start*.
//!
//! - [`backoff`]: capped exponential backoff with equal jitter, `Retry-After` as a capped floor,
//!   bounded attempts ([`RetryPolicy`]). Pure functions.
//! - [`limiter`]: [`RateLimiter`], a per-key pacing permit (the Fyle client awaits it before every
//!   call), with an in-process GCRA implementation ([`InProcessLimiter`]) and [`Unlimited`].
//! - [`permits`]: [`RequestLimiter`], pacing **and** a cap on requests in flight per key, granting
//!   a [`Permit`] held until the answer has been read (QBO limits both: 500/minute and 10 at once
//!   per realm), with an in-process implementation ([`InProcessPermits`]).
//!
//! The traits are object-safe (boxed futures) so a service can plug a store shared by its
//! replicas (a PostgreSQL token bucket, leases) into the same clients.
//!
//! Failure policy: every limiter fails **closed** — `Err` from `acquire` means the caller must
//! not make the call (exceeding a partner's limit gets the integration throttled or blocked).

pub mod backoff;
pub mod limiter;
pub mod permits;

pub use crate::{
    backoff::{RetryPolicy, backoff_delay, parse_retry_after},
    limiter::{BoxFuture, InProcessLimiter, RateLimiter, Unlimited},
    permits::{InProcessPermits, Permit, RequestLimiter},
};
