//! Who may post a workspace's Fyle webhooks — pure rules, no I/O.
//!
//! Workspace ids are sequential and org ids are not secret, so the incumbent's only check
//! (`data.org_id` belongs to the workspace) lets anyone who guesses both post events that are
//! applied. Each workspace therefore has an authentication mode, kept in ingest's tables:
//!
//! - `url_token` (the default for new workspaces): the URL Fyle is given carries a random
//!   token as a query parameter, `…/workspaces/{id}/fyle/exports/?token=…`, compared in
//!   constant time. `GetWebhookEndpoint` hands out that URL.
//! - `hmac`: the body is signed with a per-workspace secret, either Standard Webhooks
//!   (`webhook-id`, `webhook-timestamp` within ±`signature_tolerance`, `webhook-signature:
//!   v1,<base64>` over `id.timestamp.body`, key = the base64 after `whsec_`) or
//!   `X-Fyle-Signature` (hex HMAC-SHA256 of the raw body, key = the secret string).
//! - `org_check_only`: production's behaviour, kept for workspaces whose registered URL carries
//!   no token.
//!
//! Several secrets may be valid at once (the current one and, during a rotation's overlap, the
//! previous one), so a rotation never drops a delivery. In every mode `data.org_id` must still
//! belong to the workspace (checked after parsing).
//!
//! **Typestate**: [`Verified`] has private fields and only [`authenticate`] makes one; the
//! inbox accepts nothing else (`store::Inbox::accept` takes it), so no future path can skip the check.
//!
//! Failure policy: fail closed. Before authentication succeeds every refusal looks the same
//! (401, one body), whether the workspace does not exist, the token is wrong or a signature is
//! missing, so a stranger learns nothing about which workspaces exist.

use std::time::Duration;

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// How a workspace's Fyle webhooks are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    UrlToken,
    Hmac,
    OrgCheckOnly,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::UrlToken => "url_token",
            AuthMode::Hmac => "hmac",
            AuthMode::OrgCheckOnly => "org_check_only",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "url_token" => Some(AuthMode::UrlToken),
            "hmac" => Some(AuthMode::Hmac),
            "org_check_only" => Some(AuthMode::OrgCheckOnly),
            _ => None,
        }
    }

    /// The kind of secret the mode checks, if any.
    pub fn secret_kind(self) -> Option<&'static str> {
        match self {
            AuthMode::UrlToken => Some("url_token"),
            AuthMode::Hmac => Some("hmac"),
            AuthMode::OrgCheckOnly => None,
        }
    }
}

/// A workspace's mode and the secrets of that mode that are valid now (opened).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub mode: AuthMode,
    pub secrets: Vec<String>,
    /// When the first of `secrets` stops being valid (a rotated-out secret's overlap ends):
    /// credentials kept in memory must be loaded again by then.
    pub reload_by: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("mode", &self.mode)
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

/// What a delivery brings to prove itself, before anything else of it is trusted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Presented<'a> {
    /// The `token` query parameter.
    pub token: Option<&'a str>,
    pub webhook_id: Option<&'a str>,
    pub webhook_timestamp: Option<&'a str>,
    pub webhook_signature: Option<&'a str>,
    pub fyle_signature: Option<&'a str>,
}

/// A delivery that passed its check: a Fyle delivery its workspace's check ([`authenticate`]),
/// or a QBO delivery its `intuit-signature` ([`Verified::qbo`], which needs the
/// [`crate::qbo::VerifiedQboBody`] only a valid signature yields). Nothing else makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// `None` for a QBO delivery whose realm belongs to no workspace (recorded, not relayed).
    workspace_id: Option<i64>,
    proof: Proof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proof {
    Fyle(AuthMode),
    QboSignature,
}

impl Verified {
    /// A QBO delivery for `workspace_id` (or for no workspace): its body's signature verified.
    pub fn qbo(_signed: &crate::qbo::VerifiedQboBody<'_>, workspace_id: Option<i64>) -> Self {
        Self {
            workspace_id,
            proof: Proof::QboSignature,
        }
    }

    pub fn workspace_id(&self) -> Option<i64> {
        self.workspace_id
    }

    /// The Fyle authentication mode that admitted it (`None` for QBO).
    pub fn mode(&self) -> Option<AuthMode> {
        match self.proof {
            Proof::Fyle(mode) => Some(mode),
            Proof::QboSignature => None,
        }
    }

    /// `fyle` or `qbo`, as the inbox records it.
    pub fn source(&self) -> &'static str {
        match self.proof {
            Proof::Fyle(_) => "fyle",
            Proof::QboSignature => "qbo",
        }
    }
}

/// Why a delivery did not authenticate (logged and counted; the answer is always the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    MissingToken,
    WrongToken,
    MissingSignature,
    StaleTimestamp,
    WrongSignature,
    /// The mode needs a secret and the workspace has none yet.
    NoSecret,
}

impl AuthFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::MissingToken => "missing_token",
            AuthFailure::WrongToken => "wrong_token",
            AuthFailure::MissingSignature => "missing_signature",
            AuthFailure::StaleTimestamp => "stale_timestamp",
            AuthFailure::WrongSignature => "wrong_signature",
            AuthFailure::NoSecret => "no_secret",
        }
    }
}

/// Checks `presented` (and, for HMAC, the raw `body`) against the workspace's credentials.
pub fn authenticate(
    workspace_id: i64,
    credentials: &Credentials,
    presented: &Presented<'_>,
    body: &[u8],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<Verified, AuthFailure> {
    let verified = Verified {
        workspace_id: Some(workspace_id),
        proof: Proof::Fyle(credentials.mode),
    };
    match credentials.mode {
        AuthMode::OrgCheckOnly => Ok(verified),
        AuthMode::UrlToken => {
            check_token(credentials, presented)?;
            Ok(verified)
        }
        AuthMode::Hmac => {
            if credentials.secrets.is_empty() {
                return Err(AuthFailure::NoSecret);
            }
            if let Some(signature) = presented.webhook_signature {
                check_standard_webhooks(credentials, presented, signature, body, now, tolerance)?;
            } else if let Some(signature) = presented.fyle_signature {
                check_fyle_signature(credentials, signature, body)?;
            } else {
                return Err(AuthFailure::MissingSignature);
            }
            Ok(verified)
        }
    }
}

/// The token check alone, which needs no body (url_token mode checks it before reading one).
pub fn check_token(
    credentials: &Credentials,
    presented: &Presented<'_>,
) -> Result<(), AuthFailure> {
    if credentials.secrets.is_empty() {
        return Err(AuthFailure::NoSecret);
    }
    let token = presented.token.ok_or(AuthFailure::MissingToken)?;
    let matches = credentials.secrets.iter().fold(false, |found, secret| {
        found | bool::from(secret.as_bytes().ct_eq(token.as_bytes()))
    });
    if matches {
        Ok(())
    } else {
        Err(AuthFailure::WrongToken)
    }
}

fn check_standard_webhooks(
    credentials: &Credentials,
    presented: &Presented<'_>,
    signature_header: &str,
    body: &[u8],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<(), AuthFailure> {
    let (Some(id), Some(timestamp)) = (presented.webhook_id, presented.webhook_timestamp) else {
        return Err(AuthFailure::MissingSignature);
    };
    let sent_at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| AuthFailure::StaleTimestamp)?;
    let skew = now.timestamp().abs_diff(sent_at);
    if skew > tolerance.as_secs() {
        return Err(AuthFailure::StaleTimestamp);
    }
    let offered: Vec<Vec<u8>> = signature_header
        .split_whitespace()
        .filter_map(|part| part.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .collect();
    for secret in &credentials.secrets {
        let key = standard_webhooks_key(secret);
        for signature in &offered {
            let mut mac = hmac(&key);
            mac.update(id.as_bytes());
            mac.update(b".");
            mac.update(timestamp.trim().as_bytes());
            mac.update(b".");
            mac.update(body);
            if mac.verify_slice(signature).is_ok() {
                return Ok(());
            }
        }
    }
    Err(AuthFailure::WrongSignature)
}

fn check_fyle_signature(
    credentials: &Credentials,
    signature_hex: &str,
    body: &[u8],
) -> Result<(), AuthFailure> {
    let signature = hex::decode(signature_hex.trim()).map_err(|_| AuthFailure::WrongSignature)?;
    for secret in &credentials.secrets {
        let mut mac = hmac(secret.as_bytes());
        mac.update(body);
        if mac.verify_slice(&signature).is_ok() {
            return Ok(());
        }
    }
    Err(AuthFailure::WrongSignature)
}

fn hmac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of every length.
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key"))
}

/// The Standard Webhooks key of a secret: the bytes after `whsec_`, else the string itself.
fn standard_webhooks_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(|b64| STANDARD.decode(b64).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// A new URL token: 32 random bytes, URL-safe base64.
pub fn new_url_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A new HMAC secret in the Standard Webhooks form, `whsec_<base64 of 32 random bytes>`.
pub fn new_hmac_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("whsec_{}", STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    // Vectors computed independently with Python's hmac/hashlib/base64:
    //   key = base64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), msg = b"msg_1.1700000000.{\"a\":1}"
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const BODY: &[u8] = br#"{"a":1}"#;
    const STANDARD_SIGNATURE: &str = "v1,hVsFLpmw4Ib/Xm0eZLt3KqYBZdt0U8gdGeuz0EsGv78=";
    const FYLE_SIGNATURE: &str = "45ec03b2b33403c8043a90de06bedad0827183927115fd7e448ef97eeb13c5be";

    fn at(ts: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(ts, 0).single().expect("time")
    }

    fn hmac_mode(secrets: &[&str]) -> Credentials {
        Credentials {
            mode: AuthMode::Hmac,
            secrets: secrets.iter().map(|s| (*s).to_owned()).collect(),
            reload_by: None,
        }
    }

    fn standard<'a>(signature: &'a str, timestamp: &'a str) -> Presented<'a> {
        Presented {
            webhook_id: Some("msg_1"),
            webhook_timestamp: Some(timestamp),
            webhook_signature: Some(signature),
            ..Presented::default()
        }
    }

    const FIVE_MIN: Duration = Duration::from_secs(300);

    #[test]
    fn standard_webhooks_signatures_verify_against_an_external_vector() {
        let ok = authenticate(
            7,
            &hmac_mode(&[SECRET]),
            &standard(STANDARD_SIGNATURE, "1700000000"),
            BODY,
            at(1_700_000_100),
            FIVE_MIN,
        )
        .expect("valid");
        assert_eq!(
            (ok.workspace_id(), ok.mode()),
            (Some(7), Some(AuthMode::Hmac))
        );
        // The same signature in a list with a wrong one (rotation on the sender's side).
        let listed = format!("v1,AAAA {STANDARD_SIGNATURE}");
        assert!(
            authenticate(
                7,
                &hmac_mode(&[SECRET]),
                &standard(&listed, "1700000000"),
                BODY,
                at(1_700_000_000),
                FIVE_MIN
            )
            .is_ok()
        );
    }

    #[test]
    fn a_replayed_standard_webhook_outside_the_tolerance_is_refused() {
        let old = authenticate(
            7,
            &hmac_mode(&[SECRET]),
            &standard(STANDARD_SIGNATURE, "1700000000"),
            BODY,
            at(1_700_000_301),
            FIVE_MIN,
        );
        assert_eq!(old, Err(AuthFailure::StaleTimestamp));
    }

    #[test]
    fn a_tampered_body_or_another_secret_is_refused() {
        let tampered = authenticate(
            7,
            &hmac_mode(&[SECRET]),
            &standard(STANDARD_SIGNATURE, "1700000000"),
            br#"{"a":2}"#,
            at(1_700_000_000),
            FIVE_MIN,
        );
        assert_eq!(tampered, Err(AuthFailure::WrongSignature));
        let other = authenticate(
            7,
            &hmac_mode(&["whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]),
            &standard(STANDARD_SIGNATURE, "1700000000"),
            BODY,
            at(1_700_000_000),
            FIVE_MIN,
        );
        assert_eq!(other, Err(AuthFailure::WrongSignature));
    }

    #[test]
    fn x_fyle_signature_verifies_with_either_secret_during_an_overlap() {
        let presented = Presented {
            fyle_signature: Some(FYLE_SIGNATURE),
            ..Presented::default()
        };
        let overlap = hmac_mode(&["whsec_new-one-not-matching", SECRET]);
        assert!(authenticate(7, &overlap, &presented, BODY, at(0), FIVE_MIN).is_ok());
        let after = hmac_mode(&["whsec_new-one-not-matching"]);
        assert_eq!(
            authenticate(7, &after, &presented, BODY, at(0), FIVE_MIN),
            Err(AuthFailure::WrongSignature)
        );
        assert_eq!(
            authenticate(7, &overlap, &Presented::default(), BODY, at(0), FIVE_MIN),
            Err(AuthFailure::MissingSignature)
        );
    }

    #[test]
    fn url_tokens_must_match_one_valid_token() {
        let credentials = Credentials {
            mode: AuthMode::UrlToken,
            secrets: vec!["tok-current".into(), "tok-previous".into()],
            reload_by: None,
        };
        let with = |token| Presented {
            token,
            ..Presented::default()
        };
        assert!(check_token(&credentials, &with(Some("tok-previous"))).is_ok());
        assert_eq!(
            check_token(&credentials, &with(Some("tok-current0"))),
            Err(AuthFailure::WrongToken)
        );
        assert_eq!(
            check_token(&credentials, &with(None)),
            Err(AuthFailure::MissingToken)
        );
        let none = Credentials {
            mode: AuthMode::UrlToken,
            secrets: vec![],
            reload_by: None,
        };
        assert_eq!(
            check_token(&none, &with(Some(""))),
            Err(AuthFailure::NoSecret),
            "a workspace without a token accepts nothing, not even an empty token"
        );
    }

    #[test]
    fn generated_secrets_are_long_and_distinct() {
        let (a, b) = (new_url_token(), new_url_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(new_hmac_secret().starts_with("whsec_"));
        assert_eq!(standard_webhooks_key(&new_hmac_secret()).len(), 32);
    }
}
