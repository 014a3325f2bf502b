//! Retry schedule of the Fyle client: capped exponential backoff with "equal jitter", honouring
//! `Retry-After`, bounded attempts. The schedule itself is shared with the QBO client and lives in
//! `attrsync-http-retry` (re-exported here unchanged, so `attrsync_fyle_client::backoff::…` and
//! the crate-root re-exports keep working).
//!
//! What the Fyle client retries (see [`crate::client`]): 429, 5xx and transport failures of
//! reads; of writes, 429 always (the request was refused, not processed) and 5xx/transport only
//! with [`RetryPolicy::retry_writes`] (a create repeated after a lost answer surfaces as Fyle's
//! `IntegrityError`, which callers read as "already there"). [`RetryPolicy::default`] is this
//! client's policy: 6 attempts, 250 ms doubling to 8 s, `Retry-After` up to 60 s.

pub use attrsync_http_retry::backoff::{RetryPolicy, backoff_delay, parse_retry_after};
