//! Client-side rate limiting of the Fyle client: it awaits a [`RateLimiter`] permit before
//! **every** call to the data host (retries included), keyed by the org. The trait and its
//! in-process implementation are shared with the QBO client and live in `attrsync-http-retry`
//! (re-exported here unchanged, so `attrsync_fyle_client::limiter::…` keeps working).
//!
//! Fyle allows 10 requests/second (reference §1.3: per IP, plus connection-level DoS protection;
//! the sandbox enforces it on the data host with a sliding one-second window, answering 429
//! without `Retry-After`). The default limiter is [`InProcessLimiter::fyle_default`]: one request
//! every 105 ms per org. Before the org is known — the `my_profile` call of
//! [`crate::FyleClient::connect`] — the key is the OAuth client id, and connect then acquires once
//! more for the org to charge that call to the org's budget. The accounts host (token, cluster) is
//! not paced: the documented limit is the data API's. fyle-sync plugs its PostgreSQL token bucket
//! into the same trait so every replica draws from one budget per org.
//!
//! Failure policy: **closed**. A limiter that cannot answer makes the call fail with
//! [`crate::Error::Limiter`] (transient) instead of calling Fyle unpaced.

pub use attrsync_http_retry::limiter::{BoxFuture, InProcessLimiter, RateLimiter, Unlimited};
