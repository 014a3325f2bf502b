//! The client of one realm: options, endpoints, and the request loop every data call goes
//! through. The calls themselves (query, read, CDC, writes) are in [`crate::ops`].
//!
//! One data call = at most [`RetryPolicy::max_attempts`] attempts, each of which
//! 1. takes the access token (cached, or obtained through the token store, see [`crate::auth`]),
//! 2. awaits a [`RequestLimiter`] permit for the realm (rate **and** in-flight slot) and holds it
//!    until the answer is read,
//! 3. sends `…/v3/company/{realm}/{path}?…&minorversion=N[&requestid=…]` with
//!    `Authorization: Bearer`, `Accept: application/json` (and `Content-Type` on a body), and
//! 4. classifies the answer (`classify`, pure): 2xx without a `Fault` → done; 401 or an
//!    authentication fault → a token other than the refused one and the call repeated — **once**
//!    after a refresh (a token another task or replica had already stored may buy one more
//!    repeat, [`MAX_AUTH_REPEATS`] in all); these repeats are not counted as attempts, and a 401
//!    after them is [`Error::Unauthorized`]; 429 or a 3001 fault →
//!    back off and repeat; 5xx or a system fault, and transport failures → back off and repeat
//!    when the call may be repeated (reads always; writes when [`RetryPolicy::retry_writes`]
//!    allows it — every write carries a `requestid`, so QBO answers a repeat with the first
//!    answer instead of applying it twice; a connection that was never established is always
//!    repeated); any other fault → its typed error at once.
//!
//! Delivery: reads are at-least-once; writes are at-least-once in transport and exactly-once in
//! effect within QBO's memory of `requestid`s (callers that must survive a restart pass their
//! own, derived from the event they apply).

use std::{fmt, sync::Arc, time::Duration};

use attrsync_http_retry::{RequestLimiter, RetryPolicy};
use reqwest::{Method, header::CONTENT_TYPE};
use serde_json::Value;
use url::Url;

use crate::{
    auth::{Auth, AuthTiming, Source},
    error::{Error, Result, snippet},
    fault::Fault,
    limits::default_limiter,
    oauth::{AppCredentials, OAuthClient},
    stats::{ClientStats, Counters, RequestKind, bump},
    tokens::TokenStore,
    transport::{Failure, Retrier, exchange},
};

/// The QBO client's retry policy: 7 attempts, 500 ms doubling to 30 s (a throttled minute is
/// outlasted), `Retry-After` honoured up to 2 minutes, writes repeated (they carry a `requestid`).
pub const DEFAULT_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 7,
    base_delay: Duration::from_millis(500),
    max_delay: Duration::from_secs(30),
    max_retry_after: Duration::from_secs(120),
    retry_writes: true,
};

/// Repeats of one call after 401s: one with an adopted token, one after a refresh.
pub const MAX_AUTH_REPEATS: u32 = 2;

/// Intuit's current minor version (qbo-sdk's and python-quickbooks' default).
pub const DEFAULT_MINOR_VERSION: u32 = 75;

/// How a [`QboClient`] behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Retries of 429, 5xx and transport failures (data API and token endpoint).
    pub retry: RetryPolicy,
    /// Paces and caps data calls per realm; share one between the clients of a process (the
    /// service passes its shared implementation here).
    pub limiter: Arc<dyn RequestLimiter>,
    /// `minorversion` sent with every data call.
    pub minor_version: u32,
    /// Rows per query page (1–1000; default 1000, QBO's maximum).
    pub page_size: u32,
    /// How long before expiry an access token is replaced.
    pub refresh_margin: Duration,
    /// After `invalid_grant`, how long to wait for another holder's rotation to appear in the
    /// token store before declaring the refresh token dead.
    pub rotation_wait: Duration,
    /// How far inside QBO's 30-day CDC look-back the client stays (clocks differ).
    pub cdc_margin: Duration,
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
            retry: DEFAULT_RETRY,
            limiter: default_limiter(),
            minor_version: DEFAULT_MINOR_VERSION,
            page_size: crate::query::MAX_RESULTS,
            refresh_margin: Duration::from_secs(300),
            rotation_wait: Duration::from_secs(5),
            cdc_margin: Duration::from_secs(3600),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            user_agent: concat!("attrsync-qbo-client/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// Where QBO is: the data API's base (`{api_base}/v3/company/{realm}/…`) and the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Base of the data API, without `/v3`.
    pub api_base: Url,
    /// The OAuth token endpoint.
    pub token_url: Url,
}

fn parse_url(s: &str) -> Result<Url> {
    Url::parse(s).map_err(|e| Error::InvalidRequest(format!("URL {s:?}: {e}")))
}

impl Endpoints {
    /// Explicit URLs.
    pub fn new(api_base: &str, token_url: &str) -> Result<Self> {
        Ok(Self {
            api_base: parse_url(api_base)?,
            token_url: parse_url(token_url)?,
        })
    }

    /// Intuit's production hosts.
    pub fn production() -> Self {
        Self::new(
            "https://quickbooks.api.intuit.com",
            "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",
        )
        .expect("constant URLs parse")
    }

    /// Intuit's development sandbox (same token endpoint).
    pub fn intuit_sandbox() -> Self {
        Self::new(
            "https://sandbox-quickbooks.api.intuit.com",
            "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",
        )
        .expect("constant URLs parse")
    }

    /// Both on one host, as attrsync's sandbox serves them (`{base}/v3/…`,
    /// `{base}/oauth2/v1/tokens/bearer`).
    pub fn single_host(base: &str) -> Result<Self> {
        let base = base.trim_end_matches('/');
        Self::new(base, &format!("{base}/oauth2/v1/tokens/bearer"))
    }
}

pub(crate) fn build_http(options: &ClientOptions) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(options.user_agent.clone())
        .connect_timeout(options.connect_timeout)
        .timeout(options.request_timeout)
        .build()
        .map_err(|source| Error::Transport {
            attempts: 0,
            source,
        })
}

/// How a successful (2xx) answer's body is read: a whole `Value`, or a shape of the caller's
/// (a query page whose rows are read straight into the caller's type, see
/// [`crate::ops::QueryPage`]).
pub(crate) trait Answer: Sized {
    /// Reads a 2xx body; an error when it is not this shape (it may then be a `Fault`).
    fn read(body: &[u8]) -> serde_json::Result<Self>;
    /// The `Fault` the answer carried (QBO can answer 200 with one); `body` is the answer
    /// as it came, for a shape that skipped the fault's contents.
    fn fault(&self, body: &[u8]) -> Option<Fault>;
}

impl Answer for Value {
    fn read(body: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(body)
    }

    fn fault(&self, _body: &[u8]) -> Option<Fault> {
        Fault::from_json(self)
    }
}

/// What one answer means for the request loop.
#[derive(Debug)]
pub(crate) enum Verdict<T = Value> {
    Done(T),
    Unauthorized(Option<Fault>),
    Retry(Failure),
    Fail(Error),
}

/// Classifies an answer by status and fault (see the module docs). Pure. A 2xx body that
/// reads as `T` but carries a `Fault` is judged by that fault.
pub(crate) fn classify<T: Answer>(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Verdict<T> {
    match status {
        200..=299 => match T::read(body) {
            Ok(answer) => match answer.fault(body) {
                Some(f) => by_fault(status, retry_after, f),
                None => Verdict::Done(answer),
            },
            Err(e) => match Fault::parse(body) {
                Some(f) => by_fault(status, retry_after, f),
                None => Verdict::Fail(Error::Protocol {
                    status,
                    message: format!("answer is not JSON ({e}): {}", snippet(body)),
                }),
            },
        },
        401 => Verdict::Unauthorized(Fault::parse(body)),
        403 => Verdict::Fail(Error::Forbidden {
            fault: Fault::parse(body),
        }),
        429 => Verdict::Retry(Failure::Throttled {
            retry_after,
            fault: Fault::parse(body),
        }),
        500..=599 => {
            let fault = Fault::parse(body);
            Verdict::Retry(Failure::Server {
                status,
                retry_after,
                message: fault
                    .as_ref()
                    .map_or_else(|| snippet(body), Fault::to_string),
                fault,
            })
        }
        _ => match Fault::parse(body) {
            Some(f) => by_fault(status, retry_after, f),
            None => Verdict::Fail(Error::Protocol {
                status,
                message: format!("HTTP {status} without a Fault: {}", snippet(body)),
            }),
        },
    }
}

fn by_fault<T>(status: u16, retry_after: Option<Duration>, f: Fault) -> Verdict<T> {
    if f.is_authentication() {
        return Verdict::Unauthorized(Some(f));
    }
    match f.code() {
        Some(3001) => Verdict::Retry(Failure::Throttled {
            retry_after,
            fault: Some(f),
        }),
        Some(3100) => Verdict::Fail(Error::Forbidden { fault: Some(f) }),
        Some(610) => Verdict::Fail(Error::NotFound(f)),
        Some(5010) => Verdict::Fail(Error::StaleObject(f)),
        Some(6240) => Verdict::Fail(Error::DuplicateName(f)),
        _ if f.is_system() => Verdict::Retry(Failure::Server {
            status,
            retry_after,
            message: f.to_string(),
            fault: Some(f),
        }),
        _ => Verdict::Fail(Error::Validation { status, fault: f }),
    }
}

/// A request body.
#[derive(Debug)]
pub(crate) enum Body {
    Json(Value),
    /// `POST /query` with `Content-Type: application/text`.
    Text(String),
}

/// One data call, before attempts.
#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) kind: RequestKind,
    pub(crate) method: Method,
    /// Below `/v3/company/{realm}/`.
    pub(crate) path: String,
    pub(crate) params: Vec<(&'static str, String)>,
    pub(crate) body: Option<Body>,
    pub(crate) request_id: Option<String>,
    /// May be repeated after a 5xx/transport failure whatever the policy (reads).
    pub(crate) idempotent: bool,
}

/// What every clone of a client shares.
#[derive(Debug)]
pub(crate) struct Core {
    http: reqwest::Client,
    /// `{api_base}/v3/company/{realm}/`.
    company: Url,
    pub(crate) realm: String,
    pub(crate) auth: Auth,
    pub(crate) options: ClientOptions,
    pub(crate) counters: Arc<Counters>,
}

/// A client of one realm. Cheap to clone; clones share the token cache, limiter and counters.
#[derive(Clone)]
pub struct QboClient {
    pub(crate) core: Arc<Core>,
}

impl fmt::Debug for QboClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QboClient")
            .field("realm", &self.core.realm)
            .field("company", &self.core.company.as_str())
            .finish_non_exhaustive()
    }
}

impl QboClient {
    /// A client of `realm` whose tokens live in `store` (the realm must be connected there:
    /// exchange a code with [`OAuthClient::exchange_code`] and store the tokens first). Makes
    /// no request.
    pub fn new(
        endpoints: &Endpoints,
        app: AppCredentials,
        realm: &str,
        store: Arc<dyn TokenStore>,
        options: ClientOptions,
    ) -> Result<Self> {
        if realm.is_empty() || !realm.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::InvalidRequest(format!(
                "realm {realm:?} is not a numeric realm id"
            )));
        }
        if !(1..=crate::query::MAX_RESULTS).contains(&options.page_size) {
            return Err(Error::InvalidRequest(format!(
                "page_size must be 1–{}, got {}",
                crate::query::MAX_RESULTS,
                options.page_size
            )));
        }
        let base = endpoints.api_base.as_str().trim_end_matches('/');
        let company = parse_url(&format!("{base}/v3/company/{realm}/"))?;
        let http = build_http(&options)?;
        let counters = Arc::new(Counters::default());
        let oauth = OAuthClient::from_parts(
            http.clone(),
            endpoints.token_url.clone(),
            app,
            options.retry,
            Arc::clone(&counters),
        );
        let auth = Auth::new(
            realm.to_owned(),
            oauth,
            store,
            AuthTiming {
                refresh_margin: options.refresh_margin,
                rotation_wait: options.rotation_wait,
            },
            Arc::clone(&counters),
        );
        Ok(Self {
            core: Arc::new(Core {
                http,
                company,
                realm: realm.to_owned(),
                auth,
                options,
                counters,
            }),
        })
    }

    /// The realm this client acts on.
    pub fn realm(&self) -> &str {
        &self.core.realm
    }

    /// Counters of this client and its clones (token endpoint included).
    pub fn stats(&self) -> ClientStats {
        self.core.counters.snapshot()
    }

    /// The token endpoint client this client refreshes with.
    pub fn oauth(&self) -> &OAuthClient {
        self.core.auth.oauth()
    }
}

impl Core {
    fn request(&self, call: &Call, token: &str) -> Result<reqwest::RequestBuilder> {
        let url = self
            .company
            .join(&call.path)
            .map_err(|e| Error::InvalidRequest(format!("path {:?}: {e}", call.path)))?;
        let mut params = call.params.clone();
        params.push(("minorversion", self.options.minor_version.to_string()));
        if let Some(id) = &call.request_id {
            params.push(("requestid", id.clone()));
        }
        let mut req = self
            .http
            .request(call.method.clone(), url)
            .query(&params)
            .bearer_auth(token)
            .header("Accept", "application/json");
        match &call.body {
            Some(Body::Json(v)) => req = req.json(v),
            Some(Body::Text(s)) => {
                req = req.header(CONTENT_TYPE, "application/text").body(s.clone());
            }
            None => {}
        }
        Ok(req)
    }

    /// One data call with token, permit, retries and the one-time refresh; see the module docs.
    pub(crate) async fn call<T: Answer>(&self, call: &Call) -> Result<T> {
        let retrier = Retrier {
            policy: &self.options.retry,
            counters: &self.counters,
        };
        let repeatable = call.idempotent || self.options.retry.retry_writes;
        let what = call.path.as_str();
        let mut refreshed = false;
        let mut auth_repeats = 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = self.auth.token().await?;
            let req = self.request(call, token.expose())?;
            let permit = self
                .options
                .limiter
                .acquire(&self.realm)
                .await
                .map_err(Error::Limiter)?;
            self.counters.request(call.kind);
            let sent = exchange(req).await;
            drop(permit);
            let answer = match sent {
                Ok(a) => a,
                Err(e) => {
                    let retry = repeatable || e.is_connect();
                    retrier
                        .after_failure(what, attempt, Failure::Transport(e), retry)
                        .await?;
                    continue;
                }
            };
            match classify::<T>(answer.status, answer.retry_after, &answer.body) {
                Verdict::Done(v) => return Ok(v),
                Verdict::Unauthorized(_) if !refreshed && auth_repeats < MAX_AUTH_REPEATS => {
                    tracing::info!(realm = %self.realm, what, "qbo refused the access token; replacing it");
                    auth_repeats += 1;
                    attempt -= 1;
                    bump(&self.counters.auth_retries);
                    refreshed = self.auth.replace(&token).await? == Source::Refreshed;
                }
                Verdict::Unauthorized(fault) => return Err(Error::Unauthorized { fault }),
                Verdict::Retry(failure) => {
                    let retry = repeatable || matches!(failure, Failure::Throttled { .. });
                    retrier.after_failure(what, attempt, failure, retry).await?;
                }
                Verdict::Fail(e) => {
                    tracing::debug!(realm = %self.realm, what, status = answer.status, intuit_tid = ?answer.intuit_tid, error = %e, "qbo refused the call");
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(v: Verdict) -> Error {
        match v {
            Verdict::Fail(e) => e,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn answers_are_classified_by_status_and_fault() {
        assert!(matches!(
            classify::<Value>(200, None, br#"{"QueryResponse": {}, "time": "t"}"#),
            Verdict::Done(_)
        ));
        let dup = br#"{"Fault": {"Error": [{"Message": "Duplicate Name Exists Error", "Detail": "The name supplied already exists.", "code": "6240"}], "type": "ValidationFault"}}"#;
        assert!(matches!(
            fail(classify::<Value>(400, None, dup)),
            Error::DuplicateName(_)
        ));
        assert!(
            matches!(
                fail(classify::<Value>(200, None, dup)),
                Error::DuplicateName(_)
            ),
            "a 200 carrying a Fault is an error"
        );
        let code = |c: &str| {
            format!(
                r#"{{"Fault": {{"Error": [{{"Message": "m", "code": "{c}"}}], "type": "ValidationFault"}}}}"#
            )
        };
        assert!(matches!(
            fail(classify::<Value>(400, None, code("610").as_bytes())),
            Error::NotFound(_)
        ));
        assert!(matches!(
            fail(classify::<Value>(400, None, code("5010").as_bytes())),
            Error::StaleObject(_)
        ));
        assert!(matches!(
            fail(classify::<Value>(400, None, code("2020").as_bytes())),
            Error::Validation { status: 400, .. }
        ));
        assert!(matches!(
            fail(classify::<Value>(400, None, code("6000").as_bytes())),
            Error::Validation { .. }
        ));
        assert!(matches!(
            fail(classify::<Value>(400, None, b"<html>oops</html>")),
            Error::Protocol { status: 400, .. }
        ));
        assert!(matches!(
            fail(classify::<Value>(200, None, b"{not json")),
            Error::Protocol { status: 200, .. }
        ));
    }

    #[test]
    fn throttles_server_errors_and_auth_are_typed_in_either_format() {
        let xml429 = br#"<IntuitResponse><Fault type="SERVICE"><Error code="3001"><Message>message=ThrottleExceeded; errorCode=003001; statusCode=429</Message></Error></Fault></IntuitResponse>"#;
        assert!(matches!(
            classify::<Value>(429, None, xml429),
            Verdict::Retry(Failure::Throttled { fault: Some(f), .. }) if f.code() == Some(3001)
        ));
        assert!(matches!(
            classify::<Value>(400, Some(Duration::from_secs(2)), xml429),
            Verdict::Retry(Failure::Throttled {
                retry_after: Some(_),
                ..
            })
        ));
        assert!(matches!(
            classify::<Value>(503, None, b""),
            Verdict::Retry(Failure::Server { status: 503, .. })
        ));
        let system = br#"{"Fault": {"Error": [{"Message": "An application error has occurred", "code": "10000"}], "type": "SystemFault"}}"#;
        assert!(matches!(
            classify::<Value>(400, None, system),
            Verdict::Retry(Failure::Server { .. })
        ));
        let xml401 = br#"<IntuitResponse><Fault type="AuthenticationFault"><Error code="100"><Message>General Authentication Error</Message></Error></Fault></IntuitResponse>"#;
        assert!(matches!(
            classify::<Value>(401, None, xml401),
            Verdict::Unauthorized(Some(f)) if f.code() == Some(100)
        ));
        assert!(matches!(
            classify::<Value>(200, None, br#"{"fault": {"error": [{"message": "m", "code": "3200"}], "type": "AUTHENTICATION"}}"#),
            Verdict::Unauthorized(Some(_))
        ));
        let forbidden = br#"{"fault": {"error": [{"message": "message=AuthorizationFailed; errorCode=003100; statusCode=403", "code": "3100"}], "type": "SERVICE"}}"#;
        let e = fail(classify::<Value>(403, None, forbidden));
        assert!(matches!(&e, Error::Forbidden { fault: Some(_) }), "{e:?}");
        assert_eq!(e.disposition(), crate::Disposition::Broken);
    }

    #[test]
    fn endpoints_and_client_arguments_are_checked() {
        let e = Endpoints::single_host("http://127.0.0.1:58082/").expect("url");
        assert_eq!(e.api_base.as_str(), "http://127.0.0.1:58082/");
        assert_eq!(
            e.token_url.as_str(),
            "http://127.0.0.1:58082/oauth2/v1/tokens/bearer"
        );
        assert_eq!(
            Endpoints::production().api_base.host_str(),
            Some("quickbooks.api.intuit.com")
        );
        let app = AppCredentials {
            client_id: "id".into(),
            client_secret: "secret".into(),
        };
        let store: Arc<dyn TokenStore> = Arc::new(crate::InMemoryTokenStore::new());
        for realm in ["", "12/../34", "abc"] {
            assert!(
                QboClient::new(
                    &e,
                    app.clone(),
                    realm,
                    Arc::clone(&store),
                    ClientOptions::default()
                )
                .is_err(),
                "{realm:?}"
            );
        }
        let bad_page = ClientOptions {
            page_size: 1001,
            ..ClientOptions::default()
        };
        assert!(QboClient::new(&e, app.clone(), "1", Arc::clone(&store), bad_page).is_err());
        let ok = QboClient::new(&e, app, "9130357766900456", store, ClientOptions::default())
            .expect("client");
        assert_eq!(
            ok.core.company.as_str(),
            "http://127.0.0.1:58082/v3/company/9130357766900456/"
        );
    }
}
