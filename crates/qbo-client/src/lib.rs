//! A client of the QuickBooks Online Accounting API (reference §3): the only code in attrsync
//! that talks to QBO. It is a pure HTTP client — no database, no Kafka — used by qbo-sync (pulls,
//! CDC, reconcile, writes) and the `ConnectQbo` flow (code exchange).
//!
//! ```no_run
//! # async fn demo() -> attrsync_qbo_client::Result<()> {
//! use std::sync::Arc;
//! use attrsync_qbo_client::{
//!     Active, AppCredentials, ClientOptions, Endpoints, InMemoryTokenStore, QboClient, Query,
//!     Secret, Tokens,
//! };
//! let store = Arc::new(InMemoryTokenStore::new()); // the service: its PostgreSQL store
//! store.insert("9130357766900456", Tokens::refresh_only("AB11…"));
//! let app = AppCredentials { client_id: "AB…".into(), client_secret: Secret::new("…") };
//! let qbo = QboClient::new(&Endpoints::production(), app, "9130357766900456", store,
//!                          ClientOptions::default())?;
//! let accounts = qbo.query_all(&Query::select("Account").active(Active::Both)).await?;
//! let changed = qbo.cdc(&["Account", "Vendor"], chrono::Utc::now() - chrono::TimeDelta::hours(1)).await?;
//! # Ok(()) }
//! ```
//!
//! # Design
//! - **Tokens** ([`tokens`], [`auth`], [`oauth`]): refresh tokens rotate, so the client keeps
//!   none. Every refresh reads the realm's tokens from a [`TokenStore`] and stores the new ones
//!   with a compare-and-swap on the refresh token it sent; two replicas refreshing at once never
//!   lose the token — the loser uses the winner's. The access token is shared through the store,
//!   cached until expiry minus a margin, and refreshed once (the call repeated once) on a 401.
//! - **Every data call** ([`client`]) sends `Authorization: Bearer`, `Accept: application/json`
//!   and `minorversion` (75 by default), waits for a per-realm [`RequestLimiter`] permit (500/min
//!   and 10 in flight, [`limits`]) before each attempt, and retries 429/5xx/transport failures
//!   with bounded, jittered backoff (`attrsync-http-retry`, shared with the Fyle client). Writes
//!   carry a `requestid`, so a repeated write is answered, not applied twice.
//! - **Calls** ([`ops`]): a typed [`Query`] builder with correct quoting, `query_all` paging by
//!   1000, `count`, read by id, [`cdc`] with deletions, create and sparse update. Entities are
//!   `serde_json::Value` objects as QBO sends them; the rules that make attributes of them live
//!   in the service.
//! - **Errors** ([`error`], [`fault`]): QBO's faults are read from JSON (data-service `Fault` and
//!   the gateway's lowercase `fault`) and XML alike, a 200 carrying a fault included, typed
//!   (auth, forbidden, throttled, not found 610, stale 5010, duplicate name 6240, validation,
//!   server, protocol) and classified by what the caller does next ([`Disposition`]).
//! - **Counters** ([`ClientStats`]): requests per kind, token requests and refreshes, 429s,
//!   retries, lost rotation races — what the realm's budget was spent on.
//!
//! # Failure policy
//! - A refresh token QBO refuses (`invalid_grant`) and nobody rotated meanwhile is
//!   [`Error::InvalidGrant`]; refused app credentials [`Error::InvalidClient`]; a 401 that
//!   survives a fresh token [`Error::Unauthorized`]; a 403 [`Error::Forbidden`]. All are
//!   [`Disposition::Broken`]: stop calling for the realm until it is reconnected.
//! - Limiter and token store fail **closed** ([`Error::Limiter`], [`Error::TokenStore`], both
//!   transient): no call without a permit, no token that could not be stored.
//! - Retries are bounded ([`attrsync_http_retry::RetryPolicy::max_attempts`]); the last failure
//!   is returned, typed. `Retry-After` is honoured when present but never relied on.
//! - CDC older than the 30-day look-back is refused before any request ([`Error::CdcTooOld`]), so
//!   the caller falls back to a full pull.
//! - Secrets (client secret, refresh and access tokens, codes) never appear in `Debug`, errors
//!   or logs ([`Secret`]).

pub mod auth;
pub mod cdc;
pub mod client;
pub mod error;
pub mod fault;
pub mod limits;
pub mod oauth;
pub mod ops;
pub mod query;
pub mod stats;
pub mod tokens;
mod transport;

pub use attrsync_http_retry::{
    BoxFuture, InProcessPermits, Permit, RequestLimiter, RetryPolicy, Unlimited,
};

pub use crate::{
    cdc::{Change, Changes},
    client::{ClientOptions, DEFAULT_MINOR_VERSION, DEFAULT_RETRY, Endpoints, QboClient},
    error::{Disposition, Error, Result},
    fault::{Fault, FaultError},
    oauth::{AppCredentials, OAuthClient},
    query::{Active, Literal, MAX_RESULTS, Order, Query},
    stats::{ClientStats, RequestKind},
    tokens::{AccessToken, InMemoryTokenStore, Rotation, Secret, StoreError, TokenStore, Tokens},
};
