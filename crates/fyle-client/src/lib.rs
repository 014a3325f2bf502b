//! A client of the Fyle Platform API (reference §1): the only code in attrsync that talks to
//! Fyle. It is a pure HTTP client — no database, no Kafka — used by fyle-sync (pulls, reconcile,
//! `ConnectFyle`) and later import-to-fyle (posts).
//!
//! ```no_run
//! # async fn demo() -> attrsync_fyle_client::Result<()> {
//! use attrsync_fyle_client::{ClientOptions, Credentials, Filters, FyleClient};
//! let creds = Credentials {
//!     client_id: "tpa…".into(),
//!     client_secret: "…".into(),
//!     refresh_token: "…".into(),
//! };
//! let fyle =
//!     FyleClient::connect("https://accounts.fylehq.com", creds, ClientOptions::default()).await?;
//! let all = fyle.list_all("categories", &Filters::new()).await?;
//! let since = fyle
//!     .list_changed_since("categories", &Filters::new(), all.watermark, std::time::Duration::from_secs(60))
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Design
//! - **Two hosts** ([`auth`]): tokens and the cluster lookup come from the accounts host; data
//!   calls go to the `cluster_domain` it returns, looked up again with every token refresh. The
//!   access token is cached for its hour (minus a margin) and refreshed once, then the call
//!   repeated once, when a data call is answered 401/498.
//! - **Every data call** ([`client`]) is paced by a [`RateLimiter`] per org ([`limiter`]), and
//!   429, 5xx and transport failures are retried with capped exponential backoff and jitter that
//!   honours `Retry-After` ([`backoff`]), a bounded number of times.
//! - **Lists** ([`list`]) are keyset passes over `(updated_at, id)` with a high-water mark, not the
//!   incumbent's offset loop: a row that exists throughout a pass is always returned, however the
//!   collection changes meanwhile, and a row written during the pass is returned by it or by the
//!   next incremental pass. Rows of another org are dropped and counted. [`PageStream`] hands
//!   the same pass out page by page, so a caller can apply one page while the next is fetched.
//! - **Errors** ([`error`]) are typed by Fyle's status and classified by what the caller does
//!   next ([`Disposition`]): transient (retry later), broken (mark the connection broken and stop
//!   calling until it is reconnected), rejected (fix the request).
//!
//! # Failure policy
//! - Credentials the token endpoint refuses (401/404) fail at once with
//!   [`Error::InvalidCredentials`]; a 401/498 that survives a fresh token is
//!   [`Error::InvalidToken`]. Both are [`Disposition::Broken`]: retrying would only hammer Fyle.
//! - Rate limiting fails **closed**: without a permit no call is made ([`Error::Limiter`]).
//! - Retries are bounded ([`RetryPolicy::max_attempts`]); the last failure is returned, typed.
//!   Reads are always repeatable; writes are repeated after 429 always and after 5xx/transport
//!   failures when [`RetryPolicy::retry_writes`] says so (at-least-once; Fyle's uniqueness rule
//!   turns a repeated create into an `IntegrityError`).
//! - A list page that breaks the pager's assumptions (order, bounds, missing keys) fails the
//!   whole pass ([`Error::Protocol`]): a partial listing could be mistaken for a complete one and
//!   deactivate rows that still exist.
//! - Secrets (client secret, refresh token, access tokens) never appear in `Debug`, `Display`,
//!   errors or logs.

pub mod auth;
pub mod backoff;
pub mod client;
pub mod error;
pub mod limiter;
pub mod list;

pub use crate::{
    auth::Credentials,
    backoff::{RetryPolicy, backoff_delay, parse_retry_after},
    client::{ClientOptions, ClientStats, FyleClient, Profile, ProfileOrg, ProfileUser},
    error::{BadRequest, BadRequestKind, BulkRowError, Disposition, Error, Result},
    limiter::{BoxFuture, InProcessLimiter, RateLimiter, Unlimited},
    list::{Filters, Listing, MAX_PAGE_SIZE, PageStream},
};
