//! QBO OAuth 2.0 (reference §3.1, endpoint Q1) and bearer-token checks (Q7).
//!
//! One app (client id/secret, HTTP Basic on the token endpoint). Each realm connection has a
//! current refresh token. **Refresh tokens rotate on every refresh**: the old one is superseded and
//! keeps working only for `refresh_grace` (0 by default — stricter than Intuit, whose grace period
//! is unspecified, so a client that fails to persist the new token is caught at once). **Refresh
//! tokens expire** `refresh_ttl` after they were issued (100 days by default; each rotation issues
//! a fresh one with a full lifetime **(inferred)**; `x_refresh_token_expires_in` reports it). A
//! superseded, expired, unknown or revoked token gets `400 {"error": "invalid_grant"}`. Bad client credentials get
//! `401 {"error": "invalid_client"}`. Access tokens live `access_ttl` on the sandbox clock; a data
//! call with an expired token gets 401 with the 3200 gateway body, one without a usable token
//! (none, or never issued) 401 with the XML `General Authentication Error`, one with another
//! realm's token 403 (3100). Failure policy: closed.

use std::{collections::HashMap, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::fyle::auth::{jwt_like, random_token};

/// Default refresh-token lifetime: 100 days (`x_refresh_token_expires_in` 8,640,000; values of
/// 8,640,000 and 8,726,400 are seen in the wild).
pub const REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(8_640_000);

/// The app's credentials.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QboApp {
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
}

#[derive(Debug, Clone)]
struct RefreshGrant {
    realm: String,
    expires_at: DateTime<Utc>,
    superseded_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
struct AccessGrant {
    realm: String,
    expires_at: DateTime<Utc>,
}

/// Token-endpoint form body.
#[derive(Debug, Deserialize)]
pub struct TokenForm {
    /// `authorization_code` or `refresh_token`.
    pub grant_type: Option<String>,
    /// Code grant.
    pub code: Option<String>,
    /// Code grant.
    pub redirect_uri: Option<String>,
    /// Refresh grant.
    pub refresh_token: Option<String>,
}

/// Outcome of a bearer check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No usable token: none, not `Bearer`, or one never issued (or forgotten a day after it
    /// expired) — 401 with the XML `General Authentication Error` (code 100).
    NoToken,
    /// A token that expired — 401 / 3200.
    Expired,
    /// Another realm's token — 403 / 3100.
    Forbidden,
}

/// How long an expired access token is still recognised as "expired" (3200) rather than unknown.
const EXPIRED_MEMORY: TimeDelta = TimeDelta::days(1);

/// OAuth state.
#[derive(Debug)]
pub struct QboAuth {
    /// The app.
    pub app: QboApp,
    refresh: HashMap<String, RefreshGrant>,
    current: HashMap<String, String>,
    codes: HashMap<String, String>,
    access: HashMap<String, AccessGrant>,
    /// Access-token lifetime.
    pub access_ttl: Duration,
    /// Grace of a superseded refresh token.
    pub refresh_grace: Duration,
    /// Lifetime of a refresh token from its issue.
    pub refresh_ttl: Duration,
}

/// Decodes `Basic base64(id:secret)`.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let b64 = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let decoded = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

impl QboAuth {
    /// State with the sandbox app.
    pub fn new(access_ttl: Duration, refresh_grace: Duration) -> Self {
        Self {
            app: QboApp {
                client_id: "ABsandboxClientId".into(),
                client_secret: "sandbox-client-secret".into(),
            },
            refresh: HashMap::new(),
            current: HashMap::new(),
            codes: HashMap::new(),
            access: HashMap::new(),
            access_ttl,
            refresh_grace,
            refresh_ttl: REFRESH_TOKEN_LIFETIME,
        }
    }

    fn refresh_expiry(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + TimeDelta::from_std(self.refresh_ttl).unwrap_or(TimeDelta::days(100))
    }

    /// Connects a realm with a deterministic first refresh token issued `now`; returns the
    /// current token.
    pub fn connect(&mut self, realm: &str, now: DateTime<Utc>) -> String {
        if let Some(t) = self.current.get(realm) {
            return t.clone();
        }
        let token = format!("AB11-refresh-{realm}");
        let expires_at = self.refresh_expiry(now);
        self.refresh.insert(
            token.clone(),
            RefreshGrant {
                realm: realm.to_owned(),
                expires_at,
                superseded_at: None,
            },
        );
        self.current.insert(realm.to_owned(), token.clone());
        token
    }

    /// The realm's current refresh token.
    pub fn current_refresh(&self, realm: &str) -> Option<&str> {
        self.current.get(realm).map(String::as_str)
    }

    /// Mints a one-time authorization code for a realm.
    pub fn issue_code(&mut self, realm: &str) -> String {
        let code = format!("AB11code{}", random_token(24));
        self.codes.insert(code.clone(), realm.to_owned());
        code
    }

    /// Issues an access token (also for in-process tests).
    pub fn issue_access(&mut self, realm: &str, now: DateTime<Utc>) -> String {
        let token = jwt_like();
        let ttl = TimeDelta::from_std(self.access_ttl).unwrap_or(TimeDelta::hours(1));
        self.access
            .retain(|_, g| g.expires_at + EXPIRED_MEMORY > now);
        self.access.insert(
            token.clone(),
            AccessGrant {
                realm: realm.to_owned(),
                expires_at: now + ttl,
            },
        );
        token
    }

    /// Expires every access token now (they are then answered 3200, not as unknown).
    pub fn expire_all(&mut self, now: DateTime<Utc>) {
        for g in self.access.values_mut() {
            g.expires_at = g.expires_at.min(now);
        }
    }

    fn rotate(&mut self, realm: &str, now: DateTime<Utc>) -> String {
        if let Some(old) = self.current.get(realm).cloned()
            && let Some(g) = self.refresh.get_mut(&old)
        {
            g.superseded_at = Some(now);
        }
        let token = format!("AB11{}", random_token(40));
        let expires_at = self.refresh_expiry(now);
        self.refresh.insert(
            token.clone(),
            RefreshGrant {
                realm: realm.to_owned(),
                expires_at,
                superseded_at: None,
            },
        );
        self.current.insert(realm.to_owned(), token.clone());
        token
    }

    /// Handles `POST /oauth2/v1/tokens/bearer`; `Err` carries status and body.
    pub fn token(
        &mut self,
        basic: Option<&str>,
        form: &TokenForm,
        now: DateTime<Utc>,
    ) -> Result<Value, (u16, Value)> {
        let creds = basic.and_then(parse_basic);
        if creds.as_ref() != Some(&(self.app.client_id.clone(), self.app.client_secret.clone())) {
            return Err((401, json!({"error": "invalid_client"})));
        }
        let invalid_grant = (
            400,
            json!({"error": "invalid_grant", "error_description": "Incorrect or invalid refresh token"}),
        );
        let realm = match form.grant_type.as_deref() {
            Some("refresh_token") => {
                let rt = form
                    .refresh_token
                    .as_deref()
                    .ok_or_else(|| invalid_grant.clone())?;
                let grant = self.refresh.get(rt).ok_or_else(|| invalid_grant.clone())?;
                let grace = TimeDelta::from_std(self.refresh_grace).unwrap_or_default();
                if grant.superseded_at.is_some_and(|at| now >= at + grace)
                    || now >= grant.expires_at
                {
                    return Err(invalid_grant);
                }
                grant.realm.clone()
            }
            Some("authorization_code") => {
                let code = form
                    .code
                    .as_deref()
                    .ok_or_else(|| (400, json!({"error": "invalid_request"})))?;
                let realm = self
                    .codes
                    .remove(code)
                    .ok_or((400, json!({"error": "invalid_grant"})))?;
                let _ = &form.redirect_uri;
                realm
            }
            _ => return Err((400, json!({"error": "unsupported_grant_type"}))),
        };
        let refresh_token = self.rotate(&realm, now);
        let ttl = self.access_ttl.as_secs();
        Ok(json!({
            "token_type": "bearer",
            "access_token": self.issue_access(&realm, now),
            "expires_in": ttl,
            "refresh_token": refresh_token,
            "x_refresh_token_expires_in": self.refresh_ttl.as_secs(),
        }))
    }

    /// Checks a bearer token for a realm.
    pub fn check(
        &self,
        authorization: Option<&str>,
        realm: &str,
        now: DateTime<Utc>,
    ) -> Result<(), Denied> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .ok_or(Denied::NoToken)?;
        let grant = self.access.get(token.trim()).ok_or(Denied::NoToken)?;
        if grant.expires_at <= now {
            return Err(Denied::Expired);
        }
        if grant.realm != realm {
            return Err(Denied::Forbidden);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(app: &QboApp) -> String {
        format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", app.client_id, app.client_secret))
        )
    }

    fn refresh(rt: &str) -> TokenForm {
        TokenForm {
            grant_type: Some("refresh_token".into()),
            code: None,
            redirect_uri: None,
            refresh_token: Some(rt.into()),
        }
    }

    #[test]
    fn refresh_tokens_rotate_and_the_old_one_is_invalid_grant() {
        let mut auth = QboAuth::new(Duration::from_secs(3600), Duration::ZERO);
        let now = Utc::now();
        let first = auth.connect("r1", now);
        let b = basic(&auth.app);
        let r1 = auth
            .token(Some(&b), &refresh(&first), now)
            .expect("first refresh");
        let second = r1["refresh_token"].as_str().expect("new token").to_owned();
        assert_ne!(second, first);
        let stale = auth.token(Some(&b), &refresh(&first), now);
        assert_eq!(
            stale.err().map(|e| (e.0, e.1["error"].clone())),
            Some((400, json!("invalid_grant")))
        );
        auth.token(Some(&b), &refresh(&second), now)
            .expect("the new one works");
    }

    #[test]
    fn grace_keeps_a_superseded_token_briefly() {
        let mut auth = QboAuth::new(Duration::from_secs(3600), Duration::from_secs(60));
        let now = Utc::now();
        let first = auth.connect("r1", now);
        let b = basic(&auth.app);
        auth.token(Some(&b), &refresh(&first), now).expect("rotate");
        assert!(
            auth.token(Some(&b), &refresh(&first), now + TimeDelta::seconds(30))
                .is_ok()
        );
        assert!(
            auth.token(Some(&b), &refresh(&first), now + TimeDelta::seconds(120))
                .is_err()
        );
    }

    #[test]
    fn refresh_tokens_expire_after_their_lifetime() {
        let mut auth = QboAuth::new(Duration::from_secs(3600), Duration::ZERO);
        auth.refresh_ttl = Duration::from_secs(10);
        let now = Utc::now();
        let first = auth.connect("r1", now);
        let b = basic(&auth.app);
        let err = auth
            .token(Some(&b), &refresh(&first), now + TimeDelta::seconds(10))
            .expect_err("expired");
        assert_eq!(err.1["error"], "invalid_grant");
        let fresh = auth.connect("r2", now);
        let ok = auth
            .token(Some(&b), &refresh(&fresh), now + TimeDelta::seconds(9))
            .expect("still valid");
        assert_eq!(ok["x_refresh_token_expires_in"], 10);
    }

    #[test]
    fn bad_client_and_wrong_realm() {
        let mut auth = QboAuth::new(Duration::from_secs(3600), Duration::ZERO);
        let rt = auth.connect("r1", Utc::now());
        assert_eq!(
            auth.token(Some("Basic eDp5"), &refresh(&rt), Utc::now())
                .err()
                .map(|e| e.0),
            Some(401)
        );
        let now = Utc::now();
        let at = auth.issue_access("r1", now);
        let h = format!("Bearer {at}");
        assert_eq!(auth.check(Some(&h), "r1", now), Ok(()));
        assert_eq!(auth.check(Some(&h), "r2", now), Err(Denied::Forbidden));
        assert_eq!(
            auth.check(Some(&h), "r1", now + TimeDelta::seconds(3600)),
            Err(Denied::Expired)
        );
        assert_eq!(auth.check(None, "r1", now), Err(Denied::NoToken));
        assert_eq!(
            auth.check(Some("Bearer never-issued"), "r1", now),
            Err(Denied::NoToken)
        );
    }
}
