//! The client: connection, the request loop every data call goes through, profile and writes.
//!
//! One data call = at most [`RetryPolicy::max_attempts`] attempts, each of which
//! 1. takes the current session (refreshing token and cluster when due, see [`crate::auth`]),
//! 2. awaits a permit from the [`RateLimiter`] for the org,
//! 3. sends the request with the bearer token, and
//! 4. classifies the answer: 2xx → done; 401/498 → invalidate that session and repeat **once**
//!    (not counted as an attempt; a second 401/498 is [`Error::InvalidToken`]); 429 → back off
//!    (honouring `Retry-After`) and repeat; 5xx and transport failures → back off and repeat for
//!    reads, and for writes when [`RetryPolicy::retry_writes`] allows it (a connection that was
//!    never established is always repeated: the request never left); 400/403/404/other → the typed
//!    error at once.
//!
//! Writes are at-least-once when repeated after a lost answer: Fyle's create-or-update by `id`
//! makes an update idempotent, and a repeated create meets Fyle's uniqueness rule
//! (`IntegrityError`), which callers treat as "already created".

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use reqwest::{Method, RequestBuilder, header::RETRY_AFTER};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use crate::{
    auth::{Auth, Credentials},
    backoff::{RetryPolicy, backoff_delay, parse_retry_after},
    error::{BadRequest, Error, Result, message_of},
    limiter::{InProcessLimiter, RateLimiter},
    list::MAX_PAGE_SIZE,
};

/// How a [`FyleClient`] behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Retries of 429, 5xx and transport failures.
    pub retry: RetryPolicy,
    /// Paces data-host calls per org; share one between clients of the same org (fyle-sync will
    /// pass its PostgreSQL lease here).
    pub limiter: Arc<dyn RateLimiter>,
    /// Rows per list page (1–200; default 200, Fyle's maximum).
    pub page_size: usize,
    /// Access-token lifetime when the token answer has no `expires_in` (Fyle: 1 hour).
    pub token_ttl: Duration,
    /// How long before expiry a token is replaced.
    pub refresh_margin: Duration,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// `User-Agent` header.
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            limiter: Arc::new(InProcessLimiter::fyle_default()),
            page_size: MAX_PAGE_SIZE,
            token_ttl: Duration::from_secs(3600),
            refresh_margin: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            user_agent: concat!("attrsync-fyle-client/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// The connected org and user (`GET /spender/my_profile`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Profile {
    /// The org all data calls act on.
    pub org_id: String,
    /// The org.
    #[serde(default)]
    pub org: ProfileOrg,
    /// The user the refresh token belongs to.
    #[serde(default)]
    pub user: ProfileUser,
    /// The user's roles in the org (`FYLER`, `ADMIN`, …).
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `my_profile.org`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ProfileOrg {
    /// Org id.
    #[serde(default)]
    pub id: String,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Currency.
    #[serde(default)]
    pub currency: Option<String>,
    /// Domain.
    #[serde(default)]
    pub domain: Option<String>,
}

/// `my_profile.user`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ProfileUser {
    /// User id (`us…`).
    #[serde(default)]
    pub id: String,
    /// Email.
    #[serde(default)]
    pub email: Option<String>,
    /// Full name.
    #[serde(default)]
    pub full_name: Option<String>,
}

/// Calls made by one client, for tests, metrics and API-budget accounting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Requests sent to the data host (every attempt).
    pub data_requests: u64,
    /// Token-endpoint refreshes started.
    pub token_refreshes: u64,
    /// Cluster lookups started.
    pub cluster_lookups: u64,
    /// Attempts repeated after a 429, 5xx or transport failure.
    pub retries: u64,
    /// 429 answers received.
    pub throttled: u64,
    /// Data calls repeated once after a 401/498.
    pub auth_retries: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    data_requests: AtomicU64,
    pub(crate) token_refreshes: AtomicU64,
    pub(crate) cluster_lookups: AtomicU64,
    retries: AtomicU64,
    throttled: AtomicU64,
    auth_retries: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> ClientStats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ClientStats {
            data_requests: r(&self.data_requests),
            token_refreshes: r(&self.token_refreshes),
            cluster_lookups: r(&self.cluster_lookups),
            retries: r(&self.retries),
            throttled: r(&self.throttled),
            auth_retries: r(&self.auth_retries),
        }
    }
}

/// A failed attempt that may be repeated.
enum Failure {
    Throttled {
        retry_after: Option<Duration>,
        message: String,
    },
    Server {
        status: u16,
        retry_after: Option<Duration>,
        message: String,
    },
    Transport(reqwest::Error),
}

impl Failure {
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Throttled { retry_after, .. } | Failure::Server { retry_after, .. } => {
                *retry_after
            }
            Failure::Transport(_) => None,
        }
    }

    fn into_error(self, attempts: u32) -> Error {
        match self {
            Failure::Throttled {
                retry_after,
                message,
            } => Error::RateLimited {
                attempts,
                retry_after,
                message,
            },
            Failure::Server {
                status, message, ..
            } => Error::Server {
                status,
                attempts,
                message,
            },
            Failure::Transport(source) => Error::Transport { attempts, source },
        }
    }
}

/// A received answer.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

async fn exchange(req: RequestBuilder) -> Result<Answer, reqwest::Error> {
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
    let body = resp.bytes().await?.to_vec();
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

/// Applies a [`RetryPolicy`]: decides, waits, counts.
#[derive(Debug)]
pub(crate) struct Retrier<'a> {
    policy: &'a RetryPolicy,
    counters: &'a Counters,
}

impl Retrier<'_> {
    /// After failed attempt `attempt`: waits and returns `Ok` when another attempt is allowed,
    /// else the error to return.
    async fn after_failure(&self, attempt: u32, failure: Failure, retryable: bool) -> Result<()> {
        if matches!(failure, Failure::Throttled { .. }) {
            self.counters.throttled.fetch_add(1, Ordering::Relaxed);
        }
        if !retryable || attempt >= self.policy.max_attempts {
            return Err(failure.into_error(attempt));
        }
        let delay = backoff_delay(
            self.policy,
            attempt,
            failure.retry_after(),
            rand::random::<f64>(),
        );
        let what = match &failure {
            Failure::Throttled { .. } => "429".to_owned(),
            Failure::Server { status, .. } => status.to_string(),
            Failure::Transport(e) => e.to_string(),
        };
        tracing::warn!(attempt, ?delay, failure = %what, "fyle call failed, retrying");
        self.counters.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// One unpaced, unauthenticated-by-session request with retries (the accounts host). Returns
    /// the final status and body of any answer that is not retried.
    pub(crate) async fn run(
        &self,
        retry_server_errors: bool,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<(u16, Vec<u8>)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match exchange(make()).await {
                Err(e) => {
                    let retry = retry_server_errors || e.is_connect();
                    self.after_failure(attempt, Failure::Transport(e), retry)
                        .await?;
                }
                Ok(a) if a.status == 429 => {
                    let failure = Failure::Throttled {
                        retry_after: a.retry_after,
                        message: message_of(&a.body),
                    };
                    self.after_failure(attempt, failure, true).await?;
                }
                Ok(a) if a.status >= 500 => {
                    let failure = Failure::Server {
                        status: a.status,
                        retry_after: a.retry_after,
                        message: message_of(&a.body),
                    };
                    self.after_failure(attempt, failure, retry_server_errors)
                        .await?;
                }
                Ok(a) => return Ok((a.status, a.body)),
            }
        }
    }
}

/// What every clone of a client shares.
#[derive(Debug)]
struct Core {
    http: reqwest::Client,
    auth: Auth,
    options: ClientOptions,
    counters: Counters,
}

/// A connected Fyle client for one org. Cheap to clone; clones share token, limiter and counters.
#[derive(Clone)]
pub struct FyleClient {
    core: Arc<Core>,
    profile: Arc<Profile>,
}

impl fmt::Debug for FyleClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FyleClient")
            .field("org_id", &self.profile.org_id)
            .field("accounts", &self.core.auth.accounts_url().as_str())
            .field("client_id", &self.core.auth.client_id())
            .finish_non_exhaustive()
    }
}

/// Checks a resource path (`categories`, `dependent_expense_field_values`): lowercase words
/// and `/`, nothing that could leave `/platform/v1/admin/`.
pub(crate) fn check_resource(resource: &str) -> Result<()> {
    let ok = !resource.is_empty()
        && resource
            .split('/')
            .all(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!(
            "resource {resource:?} is not a Fyle admin resource path"
        )))
    }
}

impl FyleClient {
    /// Refreshes an access token on the accounts host, looks up the org's cluster and reads the
    /// profile (`my_profile`) to learn the org. Wrong or revoked credentials fail with
    /// [`Error::InvalidCredentials`].
    pub async fn connect(
        accounts_url: &str,
        credentials: Credentials,
        options: ClientOptions,
    ) -> Result<Self> {
        let accounts = Url::parse(accounts_url)
            .map_err(|e| Error::InvalidRequest(format!("accounts URL {accounts_url:?}: {e}")))?;
        if !(1..=MAX_PAGE_SIZE).contains(&options.page_size) {
            return Err(Error::InvalidRequest(format!(
                "page_size must be 1–{MAX_PAGE_SIZE}, got {}",
                options.page_size
            )));
        }
        let http = reqwest::Client::builder()
            .user_agent(options.user_agent.clone())
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            .build()
            .map_err(|source| Error::Transport {
                attempts: 0,
                source,
            })?;
        let core = Arc::new(Core {
            http,
            auth: Auth::new(
                accounts,
                credentials,
                options.token_ttl,
                options.refresh_margin,
            ),
            options,
            counters: Counters::default(),
        });
        // The org is unknown until the profile names it: that one call is paced under the client
        // id, then charged to the org's budget, so the org's next call keeps the spacing.
        let key = core.auth.client_id().to_owned();
        let profile = core.profile(&key).await?;
        core.options
            .limiter
            .acquire(&profile.org_id)
            .await
            .map_err(Error::Limiter)?;
        Ok(Self {
            core,
            profile: Arc::new(profile),
        })
    }

    /// The org this client acts on.
    pub fn org_id(&self) -> &str {
        &self.profile.org_id
    }

    /// The profile read at connect.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Reads the profile again (`GET /spender/my_profile`).
    pub async fn my_profile(&self) -> Result<Profile> {
        self.core.profile(self.org_id()).await
    }

    /// Counters of this client and its clones.
    pub fn stats(&self) -> ClientStats {
        self.core.counters.snapshot()
    }

    pub(crate) fn page_size(&self) -> usize {
        self.core.options.page_size
    }

    /// `GET /platform/v1/admin/<resource>?<query>`: the raw body of one list page.
    pub(crate) async fn get_page(
        &self,
        resource: &str,
        query: &[(String, String)],
    ) -> Result<Vec<u8>> {
        self.core
            .call(
                self.org_id(),
                Method::GET,
                &format!("/admin/{resource}"),
                query,
                None,
            )
            .await
    }

    /// Creates (no `id`) or updates (with `id`) one object: `POST /admin/<resource>` with
    /// `{"data": data}`; returns Fyle's `data`.
    pub async fn post(&self, resource: &str, data: Value) -> Result<Value> {
        check_resource(resource)?;
        let body = json!({ "data": data });
        let bytes = self
            .core
            .call(
                self.org_id(),
                Method::POST,
                &format!("/admin/{resource}"),
                &[],
                Some(&body),
            )
            .await?;
        let mut answer: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Protocol(format!("POST {resource}: {e}")))?;
        match answer.get_mut("data") {
            Some(v) => Ok(v.take()),
            None => Err(Error::Protocol(format!("POST {resource}: no data"))),
        }
    }

    /// Creates or updates many objects in one atomic request: `POST /admin/<resource>/bulk` with
    /// `{"data": rows}`. A refused row fails the whole batch with a `BulkError` naming it
    /// ([`crate::BadRequestKind::Bulk`]). Callers chunk (the incumbent posts 200 rows at a time).
    pub async fn post_bulk(&self, resource: &str, rows: &[Value]) -> Result<()> {
        check_resource(resource)?;
        let body = json!({ "data": rows });
        self.core
            .call(
                self.org_id(),
                Method::POST,
                &format!("/admin/{resource}/bulk"),
                &[],
                Some(&body),
            )
            .await
            .map(drop)
    }
}

impl Core {
    fn retrier(&self) -> Retrier<'_> {
        Retrier {
            policy: &self.options.retry,
            counters: &self.counters,
        }
    }

    async fn profile(&self, key: &str) -> Result<Profile> {
        #[derive(Deserialize)]
        struct Envelope {
            data: Profile,
        }
        let bytes = self
            .call(key, Method::GET, "/spender/my_profile", &[], None)
            .await?;
        let e: Envelope = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Protocol(format!("my_profile: {e}")))?;
        if e.data.org_id.is_empty() {
            return Err(Error::Protocol("my_profile has no org_id".into()));
        }
        Ok(e.data)
    }

    /// One data-host call with pacing, retries and the one-time token refresh; see the module
    /// docs. `path` is below `/platform/v1`.
    async fn call(
        &self,
        key: &str,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<Vec<u8>> {
        let retrier = self.retrier();
        let write = method != Method::GET;
        let retry_unsafe = !write || self.options.retry.retry_writes;
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let session = self
                .auth
                .session(&self.http, &retrier, &self.counters)
                .await?;
            self.options
                .limiter
                .acquire(key)
                .await
                .map_err(Error::Limiter)?;
            self.counters.data_requests.fetch_add(1, Ordering::Relaxed);
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", session.api_base))
                .bearer_auth(&session.access_token)
                .header("Accept", "application/json");
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let answer = match exchange(req).await {
                Ok(a) => a,
                Err(e) => {
                    let retry = retry_unsafe || e.is_connect();
                    retrier
                        .after_failure(attempt, Failure::Transport(e), retry)
                        .await?;
                    continue;
                }
            };
            match answer.status {
                200..=299 => return Ok(answer.body),
                401 | 498 if !refreshed => {
                    tracing::info!(
                        status = answer.status,
                        "fyle refused the access token; refreshing once"
                    );
                    refreshed = true;
                    attempt -= 1;
                    self.counters.auth_retries.fetch_add(1, Ordering::Relaxed);
                    self.auth.invalidate(session.generation).await;
                }
                401 | 498 => {
                    return Err(Error::InvalidToken {
                        status: answer.status,
                        message: message_of(&answer.body),
                    });
                }
                429 => {
                    let failure = Failure::Throttled {
                        retry_after: answer.retry_after,
                        message: message_of(&answer.body),
                    };
                    retrier.after_failure(attempt, failure, true).await?;
                }
                500..=599 => {
                    let failure = Failure::Server {
                        status: answer.status,
                        retry_after: answer.retry_after,
                        message: message_of(&answer.body),
                    };
                    retrier
                        .after_failure(attempt, failure, retry_unsafe)
                        .await?;
                }
                400 => return Err(Error::WrongParams(BadRequest::parse(&answer.body))),
                403 => {
                    return Err(Error::NoPrivilege {
                        message: message_of(&answer.body),
                    });
                }
                404 => {
                    return Err(Error::NotFound {
                        message: message_of(&answer.body),
                    });
                }
                status => {
                    return Err(Error::UnexpectedStatus {
                        status,
                        message: message_of(&answer.body),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_paths_cannot_escape_the_admin_prefix() {
        assert!(check_resource("categories").is_ok());
        assert!(check_resource("dependent_expense_field_values").is_ok());
        assert!(check_resource("categories/delete").is_ok());
        for bad in [
            "",
            "../spender",
            "categories?x=1",
            "a//b",
            "Categories",
            "/x",
        ] {
            assert!(check_resource(bad).is_err(), "{bad}");
        }
    }
}
