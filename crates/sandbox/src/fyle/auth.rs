//! Fyle OAuth (reference §1.1, endpoint F1) and bearer-token checks.
//!
//! Served on the accounts host only (reference §1.1: `accounts.fylehq.com`), not on the cluster
//! data host. Each org registers one client (`client_id`, `client_secret`) and a long-lived
//! refresh token; the sandbox admin API can mint one-time authorization codes. A client is an
//! integration app any org may authorize (the incumbent runs every org under one
//! `FYLE_CLIENT_ID`): any registered client presenting an org's refresh token or code gets a
//! token for that org. Token-endpoint outcomes follow the
//! SDK's mapping: unknown client → 404, wrong secret / refresh token / code → 401; bodies are
//! **(inferred)**. Access tokens live `access_ttl` (3600 s by default) on the sandbox clock; an
//! expired or unknown token on a data call gets `401 {"message": "invalid token"}`.
//! Failure policy: closed — anything not positively recognised is refused.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, TimeDelta, Utc};
use rand::{Rng, distr::Alphanumeric};
use serde::Deserialize;
use serde_json::{Value, json};

/// A random token of `n` alphanumeric characters.
pub fn random_token(n: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// A JWT-looking random token (three dot-separated parts).
pub fn jwt_like() -> String {
    format!(
        "eyJ{}.{}.{}",
        random_token(24),
        random_token(48),
        random_token(32)
    )
}

/// Credentials of one org's OAuth client.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FyleClient {
    /// Org the client belongs to.
    pub org_id: String,
    /// Client id (`tpa…`).
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
    /// The long-lived refresh token.
    pub refresh_token: String,
}

#[derive(Debug, Clone)]
struct Grant {
    org_id: String,
    expires_at: DateTime<Utc>,
}

/// Token-endpoint request body (JSON). The OpenAPI schema says `additionalProperties: false`, so
/// an unknown key is refused with 400 (the sandbox's message text is **(inferred)**).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// `refresh_token` or `authorization_code`.
    pub grant_type: Option<String>,
    /// Client id.
    pub client_id: Option<String>,
    /// Client secret.
    pub client_secret: Option<String>,
    /// For the refresh grant.
    pub refresh_token: Option<String>,
    /// For the code grant.
    pub code: Option<String>,
}

/// OAuth state of the Fyle side.
#[derive(Debug)]
pub struct FyleAuth {
    clients: HashMap<String, FyleClient>,
    refresh: HashMap<String, String>,
    codes: HashMap<String, String>,
    access: HashMap<String, Grant>,
    /// Access-token lifetime.
    pub access_ttl: Duration,
}

impl FyleAuth {
    /// Empty state.
    pub fn new(access_ttl: Duration) -> Self {
        Self {
            clients: HashMap::new(),
            refresh: HashMap::new(),
            codes: HashMap::new(),
            access: HashMap::new(),
            access_ttl,
        }
    }

    /// Registers an org's client with deterministic credentials derived from the org id.
    pub fn register(&mut self, org_id: &str) -> FyleClient {
        let client = FyleClient {
            org_id: org_id.to_owned(),
            client_id: format!("tpa{org_id}"),
            client_secret: format!("secret-{org_id}"),
            refresh_token: format!("refresh-{org_id}"),
        };
        self.refresh
            .insert(client.refresh_token.clone(), org_id.to_owned());
        self.clients
            .insert(client.client_id.clone(), client.clone());
        client
    }

    /// All clients.
    pub fn clients(&self) -> Vec<FyleClient> {
        let mut v: Vec<FyleClient> = self.clients.values().cloned().collect();
        v.sort_by(|a, b| a.org_id.cmp(&b.org_id));
        v
    }

    /// Mints a one-time authorization code for an org.
    pub fn issue_code(&mut self, org_id: &str) -> String {
        let code = format!("code-{}", random_token(20));
        self.codes.insert(code.clone(), org_id.to_owned());
        code
    }

    /// Issues an access token directly (for in-process tests).
    pub fn issue_access(&mut self, org_id: &str, now: DateTime<Utc>) -> String {
        let token = jwt_like();
        let ttl = TimeDelta::from_std(self.access_ttl).unwrap_or(TimeDelta::hours(1));
        self.access.retain(|_, g| g.expires_at > now);
        self.access.insert(
            token.clone(),
            Grant {
                org_id: org_id.to_owned(),
                expires_at: now + ttl,
            },
        );
        token
    }

    /// Expires every access token now.
    pub fn expire_all(&mut self) {
        self.access.clear();
    }

    /// Handles `POST /oauth/token`; `Err` carries status and body.
    pub fn token(&mut self, req: &TokenRequest, now: DateTime<Utc>) -> Result<Value, (u16, Value)> {
        let bad = |m: &str| (400, json!({"message": m}));
        let client_id = req
            .client_id
            .as_deref()
            .ok_or_else(|| bad("client_id is required"))?;
        let secret = req
            .client_secret
            .as_deref()
            .ok_or_else(|| bad("client_secret is required"))?;
        let client = self
            .clients
            .get(client_id)
            .ok_or((404, json!({"message": "Client ID doesn't exist"})))?
            .clone();
        let unauthorized = (
            401,
            json!({"message": "Wrong client secret or/and refresh token"}),
        );
        if client.client_secret != secret {
            return Err(unauthorized);
        }
        match req.grant_type.as_deref() {
            Some("refresh_token") => {
                let rt = req
                    .refresh_token
                    .as_deref()
                    .ok_or_else(|| bad("refresh_token is required"))?;
                // The org that granted this refresh token, whichever registered client
                // presents it: a client is an integration app any org can authorize (the
                // incumbent runs every org under one FYLE_CLIENT_ID).
                let Some(org) = self.refresh.get(rt).cloned() else {
                    return Err(unauthorized);
                };
                Ok(json!({"access_token": self.issue_access(&org, now)}))
            }
            Some("authorization_code") => {
                let code = req.code.as_deref().ok_or_else(|| bad("code is required"))?;
                let Some(org) = self.codes.remove(code) else {
                    return Err(unauthorized);
                };
                let refresh_token = self
                    .refresh
                    .iter()
                    .find(|(_, o)| **o == org)
                    .map(|(token, _)| token.clone())
                    .unwrap_or_default();
                Ok(json!({
                    "access_token": self.issue_access(&org, now),
                    "refresh_token": refresh_token,
                }))
            }
            _ => Err(bad(
                "grant_type must be refresh_token or authorization_code",
            )),
        }
    }

    /// The org of a valid bearer token.
    pub fn check(&self, authorization: Option<&str>, now: DateTime<Utc>) -> Option<&str> {
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        let grant = self.access.get(token)?;
        (grant.expires_at > now).then_some(grant.org_id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(
        grant: &str,
        client: &str,
        secret: &str,
        rt: Option<&str>,
        code: Option<&str>,
    ) -> TokenRequest {
        TokenRequest {
            grant_type: Some(grant.into()),
            client_id: Some(client.into()),
            client_secret: Some(secret.into()),
            refresh_token: rt.map(Into::into),
            code: code.map(Into::into),
        }
    }

    #[test]
    fn refresh_grant_wrong_secret_and_unknown_client() {
        let mut auth = FyleAuth::new(Duration::from_secs(3600));
        let c = auth.register("orA");
        let now = Utc::now();
        let ok = auth
            .token(
                &req(
                    "refresh_token",
                    &c.client_id,
                    &c.client_secret,
                    Some(&c.refresh_token),
                    None,
                ),
                now,
            )
            .expect("valid refresh");
        let token = ok["access_token"]
            .as_str()
            .expect("access token")
            .to_owned();
        assert_eq!(
            auth.check(Some(&format!("Bearer {token}")), now),
            Some("orA")
        );
        assert_eq!(
            auth.check(
                Some(&format!("Bearer {token}")),
                now + TimeDelta::seconds(3601)
            ),
            None,
            "expired after the TTL"
        );
        let wrong = auth.token(
            &req(
                "refresh_token",
                &c.client_id,
                "nope",
                Some(&c.refresh_token),
                None,
            ),
            now,
        );
        assert_eq!(wrong.err().map(|e| e.0), Some(401));
        let unknown = auth.token(&req("refresh_token", "tpaNope", "x", Some("y"), None), now);
        assert_eq!(unknown.err().map(|e| e.0), Some(404));
    }

    #[test]
    fn code_grant_returns_refresh_token_once() {
        let mut auth = FyleAuth::new(Duration::from_secs(3600));
        let c = auth.register("orA");
        let code = auth.issue_code("orA");
        let now = Utc::now();
        let ok = auth
            .token(
                &req(
                    "authorization_code",
                    &c.client_id,
                    &c.client_secret,
                    None,
                    Some(&code),
                ),
                now,
            )
            .expect("code exchange");
        assert_eq!(ok["refresh_token"], c.refresh_token.as_str());
        let again = auth.token(
            &req(
                "authorization_code",
                &c.client_id,
                &c.client_secret,
                None,
                Some(&code),
            ),
            now,
        );
        assert_eq!(again.err().map(|e| e.0), Some(401), "codes are one-time");
    }
}
