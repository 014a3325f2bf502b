//! Intuit's token endpoint (reference §3.1): the authorization-code exchange and the refresh
//! grant. Stateless: it answers [`Tokens`] and keeps nothing — storing them is the
//! [`crate::TokenStore`]'s job (see [`crate::auth`] for who calls `refresh` and when).
//!
//! Request: `POST <token_url>` with HTTP Basic `base64(client_id:client_secret)`, an
//! `application/x-www-form-urlencoded` body (`grant_type=authorization_code&code=…&redirect_uri=…`
//! or `grant_type=refresh_token&refresh_token=…`) and `Accept: application/json`. Answer:
//! `{token_type, access_token, expires_in, refresh_token, x_refresh_token_expires_in}`; expiries
//! are computed from the moment the request started, so they err early.
//!
//! Failure policy: `400 invalid_grant` on a refresh is [`Error::InvalidGrant`] (broken — retrying
//! the same token cannot help; the caller first checks whether another holder rotated it);
//! `401 invalid_client` is [`Error::InvalidClient`]; other 4xx are [`Error::TokenRefused`]; 429,
//! 5xx and transport failures are retried with backoff like data calls (a refresh whose answer
//! was lost may have rotated the token: the repeat then meets `invalid_grant`, handled as above).
//! The endpoint is not paced by the realm limiter (Intuit's limits are the data API's). Messages
//! are scrubbed of the client secret, the refresh token and the code; none of them is logged.

use std::{fmt, sync::Arc, time::Duration};

use attrsync_http_retry::RetryPolicy;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use url::Url;

use crate::{
    client::{ClientOptions, build_http},
    error::{Error, Result, snippet},
    stats::{ClientStats, Counters, bump},
    tokens::{AccessToken, Secret, Tokens},
    transport::{Failure, Retrier, exchange},
};

/// Access-token lifetime when the answer has no `expires_in` (Intuit: one hour).
const DEFAULT_ACCESS_TTL: Duration = Duration::from_secs(3600);

/// The QBO app's OAuth client.
#[derive(Clone, PartialEq, Eq)]
pub struct AppCredentials {
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: Secret,
}

impl fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish()
    }
}

/// A client of the token endpoint. Cheap to clone; clones share counters.
#[derive(Clone)]
pub struct OAuthClient {
    http: reqwest::Client,
    token_url: Url,
    app: AppCredentials,
    retry: RetryPolicy,
    counters: Arc<Counters>,
}

impl fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient")
            .field("token_url", &self.token_url.as_str())
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    refresh_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    x_refresh_token_expires_in: Option<u64>,
}

#[derive(Deserialize, Default)]
struct OAuthError {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// Which grant a request is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Grant {
    Code,
    Refresh,
}

impl OAuthClient {
    /// A client of the token endpoint at `token_url` (timeouts, user agent and retries from
    /// `options`).
    pub fn new(token_url: &str, app: AppCredentials, options: &ClientOptions) -> Result<Self> {
        let token_url = Url::parse(token_url)
            .map_err(|e| Error::InvalidRequest(format!("token URL {token_url:?}: {e}")))?;
        Ok(Self::from_parts(
            build_http(options)?,
            token_url,
            app,
            options.retry,
            Arc::default(),
        ))
    }

    pub(crate) fn from_parts(
        http: reqwest::Client,
        token_url: Url,
        app: AppCredentials,
        retry: RetryPolicy,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            http,
            token_url,
            app,
            retry,
            counters,
        }
    }

    /// Counters of this endpoint client (token requests, refreshes, exchanges, 429s, retries).
    pub fn stats(&self) -> ClientStats {
        self.counters.snapshot()
    }

    /// Exchanges an authorization code (from the redirect that also carries `realmId`) for the
    /// realm's first tokens. The caller stores them for the realm.
    pub async fn exchange_code(&self, code: &str, redirect_uri: &str) -> Result<Tokens> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
        ];
        let tokens = self.grant(Grant::Code, &form, code).await?;
        bump(&self.counters.code_exchanges);
        Ok(tokens)
    }

    /// Refreshes: new tokens for `refresh_token`, which QBO may retire at once (rotation). Call
    /// it only between a [`crate::TokenStore::load`] and a [`crate::TokenStore::rotate`].
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<Tokens> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
        ];
        let tokens = self
            .grant(Grant::Refresh, &form, refresh_token.expose())
            .await?;
        bump(&self.counters.refreshes);
        Ok(tokens)
    }

    /// Replaces the secrets of this request in a server message.
    fn scrub(&self, text: &str, grant_secret: &str) -> String {
        let mut out = text.to_owned();
        for secret in [self.app.client_secret.expose(), grant_secret] {
            if secret.len() >= 4 {
                out = out.replace(secret, "<redacted>");
            }
        }
        out
    }

    async fn grant(&self, grant: Grant, form: &[(&str, &str)], secret: &str) -> Result<Tokens> {
        let retrier = Retrier {
            policy: &self.retry,
            counters: &self.counters,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = Utc::now();
            bump(&self.counters.token_requests);
            let req = self
                .http
                .post(self.token_url.clone())
                .basic_auth(&self.app.client_id, Some(self.app.client_secret.expose()))
                .header("Accept", "application/json")
                .form(form);
            let a = match exchange(req).await {
                Ok(a) => a,
                Err(e) => {
                    retrier
                        .after_failure("token", attempt, Failure::Transport(e), true)
                        .await?;
                    continue;
                }
            };
            let failure = match a.status {
                200..=299 => return self.tokens(&a.body, started),
                429 => Failure::Throttled {
                    retry_after: a.retry_after,
                    fault: None,
                },
                500..=599 => Failure::Server {
                    status: a.status,
                    retry_after: a.retry_after,
                    fault: None,
                    message: self.scrub(&snippet(&a.body), secret),
                },
                status => return Err(self.refusal(grant, status, &a.body, secret, a.intuit_tid)),
            };
            retrier
                .after_failure("token", attempt, failure, true)
                .await?;
        }
    }

    fn tokens(&self, body: &[u8], started: DateTime<Utc>) -> Result<Tokens> {
        let t: TokenAnswer = serde_json::from_slice(body).map_err(|e| Error::Protocol {
            status: 200,
            message: format!("token answer without access_token/refresh_token: {e}"),
        })?;
        let after = |secs: u64| {
            TimeDelta::from_std(Duration::from_secs(secs))
                .ok()
                .and_then(|d| started.checked_add_signed(d))
        };
        let access_ttl = t.expires_in.unwrap_or(DEFAULT_ACCESS_TTL.as_secs());
        Ok(Tokens {
            refresh_token: Secret::new(t.refresh_token),
            refresh_expires_at: t.x_refresh_token_expires_in.and_then(after),
            access: Some(AccessToken {
                token: Secret::new(t.access_token),
                expires_at: after(access_ttl).unwrap_or(started),
            }),
        })
    }

    fn refusal(
        &self,
        grant: Grant,
        status: u16,
        body: &[u8],
        secret: &str,
        intuit_tid: Option<String>,
    ) -> Error {
        let e: OAuthError = serde_json::from_slice(body).unwrap_or_default();
        let error = e.error.unwrap_or_default();
        let message = self.scrub(
            &e.error_description.unwrap_or_else(|| {
                if error.is_empty() {
                    snippet(body)
                } else {
                    error.clone()
                }
            }),
            secret,
        );
        tracing::warn!(status, error = %error, intuit_tid = ?intuit_tid, "qbo token endpoint refused the request");
        match (status, error.as_str(), grant) {
            (400, "invalid_grant", Grant::Refresh) => Error::InvalidGrant { message },
            (401, _, _) | (_, "invalid_client", _) => Error::InvalidClient { status, message },
            _ => Error::TokenRefused {
                status,
                error,
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> OAuthClient {
        OAuthClient::from_parts(
            reqwest::Client::new(),
            Url::parse("http://127.0.0.1:9/oauth2/v1/tokens/bearer").expect("url"),
            AppCredentials {
                client_id: "ABclient".into(),
                client_secret: Secret::new("the-client-secret"),
            },
            RetryPolicy::default(),
            Arc::default(),
        )
    }

    #[test]
    fn token_answers_become_tokens_with_expiries_from_the_start() {
        let started = Utc::now();
        let t = client()
            .tokens(
                br#"{"token_type": "bearer", "access_token": "eyJ.a", "expires_in": 3600,
                     "refresh_token": "AB11-next", "x_refresh_token_expires_in": 8726400}"#,
                started,
            )
            .expect("tokens");
        assert_eq!(t.refresh_token.expose(), "AB11-next");
        let access = t.access.expect("access");
        assert_eq!(access.expires_at, started + TimeDelta::seconds(3600));
        assert_eq!(
            t.refresh_expires_at,
            Some(started + TimeDelta::seconds(8_726_400))
        );
        assert!(matches!(
            client().tokens(br#"{"access_token": "x"}"#, started),
            Err(Error::Protocol { .. })
        ));
    }

    #[test]
    fn refusals_are_typed_and_scrubbed() {
        let c = client();
        let e = c.refusal(
            Grant::Refresh,
            400,
            br#"{"error": "invalid_grant", "error_description": "Incorrect or invalid refresh token AB11-old"}"#,
            "AB11-old",
            None,
        );
        assert!(
            matches!(&e, Error::InvalidGrant { message } if message == "Incorrect or invalid refresh token <redacted>"),
            "{e:?}"
        );
        assert_eq!(e.disposition(), crate::Disposition::Broken);
        let e = c.refusal(
            Grant::Code,
            400,
            br#"{"error": "invalid_grant"}"#,
            "code",
            None,
        );
        assert!(
            matches!(&e, Error::TokenRefused { error, .. } if error == "invalid_grant"),
            "a bad code is the request's fault, not a broken connection: {e:?}"
        );
        let e = c.refusal(
            Grant::Refresh,
            401,
            br#"{"error": "invalid_client", "error_description": "secret the-client-secret"}"#,
            "rt",
            None,
        );
        assert!(
            matches!(&e, Error::InvalidClient { status: 401, message } if !message.contains("the-client-secret")),
            "{e:?}"
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("the-client-secret"), "{shown}");
    }
}
