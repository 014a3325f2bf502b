//! OAuth on Fyle's accounts host (reference §1.1): the refresh grant, the cluster lookup and the
//! cached access token.
//!
//! `POST {accounts}/oauth/token` takes a JSON body (`grant_type=refresh_token`, client id and
//! secret, refresh token) and answers `{"access_token": …}`; `POST {accounts}/oauth/cluster` with
//! that bearer answers `{"cluster_domain": …}`, the data host, which Fyle says to look up again
//! whenever the token is refreshed — so a session is always the pair (token, cluster).
//!
//! Caching: a session is reused until `token_ttl − refresh_margin` after it was fetched (1 h
//! minus 5 min by default; an `expires_in` in the answer wins over `token_ttl`). Refreshes are
//! single-flight: callers wait on one lock while one of them refreshes. When a data call is
//! answered 401/498 the caller invalidates *the session it used* (by its generation); if
//! another caller already replaced it, nothing happens, so a burst of 401s costs one refresh.
//!
//! Failure policy: the token endpoint's 401 ("wrong client secret or/and refresh token") and 404
//! ("client ID doesn't exist") are [`Error::InvalidCredentials`] at once — retrying cannot fix a
//! revoked token; its 429/5xx/transport failures are retried like any other call. Nothing here
//! logs or returns the secret, the refresh token or an access token.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::Deserialize;
use serde_json::json;
use tokio::{sync::Mutex, time::Instant};
use url::Url;

use crate::{
    client::{Counters, Retrier},
    error::{BadRequest, Error, Result, message_of},
};

/// The OAuth client and refresh token of one org's connection.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// OAuth client id (`tpa…`).
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: String,
    /// The org's refresh token.
    pub refresh_token: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("refresh_token", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// Replaces every occurrence of a secret in `text` (a server message may echo input).
    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in [&self.client_secret, &self.refresh_token] {
            if secret.len() >= 4 {
                out = out.replace(secret.as_str(), "<redacted>");
            }
        }
        out
    }
}

/// An access token and the data host it is valid on.
pub(crate) struct Session {
    pub(crate) access_token: String,
    /// `{cluster_domain}/platform/v1`, without a trailing slash.
    pub(crate) api_base: String,
    pub(crate) generation: u64,
    refresh_at: Instant,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("access_token", &"<redacted>")
            .field("api_base", &self.api_base)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// Token and cluster state of one client.
#[derive(Debug)]
pub(crate) struct Auth {
    accounts: Url,
    credentials: Credentials,
    token_ttl: Duration,
    refresh_margin: Duration,
    current: Mutex<Option<Arc<Session>>>,
    generation: AtomicU64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct ClusterAnswer {
    cluster_domain: String,
}

impl Auth {
    pub(crate) fn new(
        accounts: Url,
        credentials: Credentials,
        token_ttl: Duration,
        refresh_margin: Duration,
    ) -> Self {
        Self {
            accounts,
            credentials,
            token_ttl,
            refresh_margin,
            current: Mutex::new(None),
            generation: AtomicU64::new(0),
        }
    }

    pub(crate) fn client_id(&self) -> &str {
        &self.credentials.client_id
    }

    pub(crate) fn accounts_url(&self) -> &Url {
        &self.accounts
    }

    /// The current session, refreshed first if it is missing, invalidated or near expiry.
    pub(crate) async fn session(
        &self,
        http: &reqwest::Client,
        retrier: &Retrier<'_>,
        counters: &Counters,
    ) -> Result<Arc<Session>> {
        let mut current = self.current.lock().await;
        if let Some(s) = current.as_ref()
            && Instant::now() < s.refresh_at
        {
            return Ok(Arc::clone(s));
        }
        let fresh = Arc::new(self.refresh(http, retrier, counters).await?);
        *current = Some(Arc::clone(&fresh));
        Ok(fresh)
    }

    /// Forgets the session of `generation` (a data call was refused with it), unless a newer one
    /// already replaced it.
    pub(crate) async fn invalidate(&self, generation: u64) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|s| s.generation == generation) {
            *current = None;
        }
    }

    async fn refresh(
        &self,
        http: &reqwest::Client,
        retrier: &Retrier<'_>,
        counters: &Counters,
    ) -> Result<Session> {
        let started = Instant::now();
        let token_url = self.endpoint("oauth/token")?;
        let body = json!({
            "grant_type": "refresh_token",
            "refresh_token": self.credentials.refresh_token,
            "client_id": self.credentials.client_id,
            "client_secret": self.credentials.client_secret,
        });
        counters.token_refreshes.fetch_add(1, Ordering::Relaxed);
        let (status, bytes) = retrier
            .run(true, || http.post(token_url.clone()).json(&body))
            .await?;
        let token: TokenAnswer = match status {
            200..=299 => serde_json::from_slice(&bytes)
                .map_err(|e| Error::Protocol(format!("token answer without access_token: {e}")))?,
            401 | 404 => {
                return Err(Error::InvalidCredentials {
                    status,
                    message: self.credentials.scrub(&message_of(&bytes)),
                });
            }
            400 => {
                let mut bad = BadRequest::parse(&bytes);
                bad.message = bad.message.map(|m| self.credentials.scrub(&m));
                return Err(Error::WrongParams(bad));
            }
            _ => {
                return Err(Error::UnexpectedStatus {
                    status,
                    message: self.credentials.scrub(&message_of(&bytes)),
                });
            }
        };

        let cluster_url = self.endpoint("oauth/cluster")?;
        counters.cluster_lookups.fetch_add(1, Ordering::Relaxed);
        let (status, bytes) = retrier
            .run(true, || {
                http.post(cluster_url.clone())
                    .bearer_auth(&token.access_token)
                    .json(&json!({}))
            })
            .await?;
        let cluster: ClusterAnswer = match status {
            200..=299 => serde_json::from_slice(&bytes).map_err(|e| {
                Error::Protocol(format!("cluster answer without cluster_domain: {e}"))
            })?,
            401 | 498 => {
                return Err(Error::InvalidToken {
                    status,
                    message: message_of(&bytes),
                });
            }
            _ => {
                return Err(Error::UnexpectedStatus {
                    status,
                    message: message_of(&bytes),
                });
            }
        };
        let domain = Url::parse(cluster.cluster_domain.trim()).map_err(|e| {
            Error::Protocol(format!(
                "cluster_domain {:?} is not a URL: {e}",
                cluster.cluster_domain
            ))
        })?;
        let ttl = token
            .expires_in
            .map_or(self.token_ttl, Duration::from_secs)
            .saturating_sub(self.refresh_margin);
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(generation, cluster = %domain, "fyle access token refreshed");
        Ok(Session {
            access_token: token.access_token,
            api_base: format!("{}/platform/v1", domain.as_str().trim_end_matches('/')),
            generation,
            refresh_at: started + ttl,
        })
    }

    fn endpoint(&self, path: &str) -> Result<Url> {
        let base = format!("{}/", self.accounts.as_str().trim_end_matches('/'));
        Url::parse(&base)
            .and_then(|b| b.join(path))
            .map_err(|e| Error::InvalidRequest(format!("bad accounts URL: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_print_their_secrets() {
        let c = Credentials {
            client_id: "tpaABC".into(),
            client_secret: "s3cr3t-value".into(),
            refresh_token: "rrr.bbbb.ccc".into(),
        };
        let shown = format!("{c:?}");
        assert!(shown.contains("tpaABC"));
        assert!(!shown.contains("s3cr3t") && !shown.contains("rrr.bbbb"));
        assert_eq!(
            c.scrub("bad token rrr.bbbb.ccc for s3cr3t-value"),
            "bad token <redacted> for <redacted>"
        );
    }
}
