//! Typed errors of the QBO client, classified by what the caller does next
//! ([`Error::disposition`]).
//!
//! Mapping (reference §3.1, §3.6): the token endpoint's `400 invalid_grant` on a refresh →
//! [`Error::InvalidGrant`] (the realm must be reconnected), its `401 invalid_client` →
//! [`Error::InvalidClient`]; on a data call 401 (after one refresh and one repeat) →
//! [`Error::Unauthorized`], 403 → [`Error::Forbidden`], 429 or code 3001 → [`Error::Throttled`],
//! 5xx or a system fault → [`Error::Server`] (these two only once the retries are spent), code 610
//! → [`Error::NotFound`], 5010 → [`Error::StaleObject`], 6240 → [`Error::DuplicateName`], any
//! other fault → [`Error::Validation`], an answer that is neither the documented shape nor a
//! fault → [`Error::Protocol`]. A 200 that carries a `Fault` is an error like any other.
//!
//! No variant carries a secret: token-endpoint messages are scrubbed of the client secret, the
//! refresh token and the code before they are kept; access tokens never enter an error; URLs
//! (which reqwest errors print) carry no credentials (the bearer travels in a header).

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::fault::Fault;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a caller should do about an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Try again later (throttled, server error, network, limiter or token store unavailable):
    /// nothing is wrong with the request or the connection.
    Transient,
    /// The realm's connection is broken (refresh token refused, app credentials refused, access
    /// refused even with a fresh token, not authorized for the realm): stop calling QBO for this
    /// realm until someone reconnects it.
    Broken,
    /// QBO refused this request (validation, not found, stale SyncToken, duplicate name, a CDC
    /// window too old, a malformed answer): repeating it unchanged will fail again.
    Rejected,
}

/// Why a QBO call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The token endpoint refused the refresh token (`400 invalid_grant`: expired, revoked or
    /// rotated away) and no other holder of the store rotated it meanwhile.
    #[error("QBO refused the refresh token (invalid_grant): {message}")]
    InvalidGrant {
        /// `error_description`, scrubbed.
        message: String,
    },
    /// The token endpoint refused the app's client id/secret (`401 invalid_client`).
    #[error("QBO refused the app credentials ({status}): {message}")]
    InvalidClient {
        /// HTTP status.
        status: u16,
        /// The answer's `error`/`error_description`, scrubbed.
        message: String,
    },
    /// Any other refusal of the token endpoint (a bad or used authorization code,
    /// `unsupported_grant_type`, …).
    #[error("QBO token endpoint refused the request ({status} {error}): {message}")]
    TokenRefused {
        /// HTTP status.
        status: u16,
        /// OAuth `error`.
        error: String,
        /// `error_description`, scrubbed.
        message: String,
    },
    /// The token store has no tokens for the realm.
    #[error("realm {realm} is not connected (no tokens stored)")]
    NotConnected {
        /// The realm.
        realm: String,
    },
    /// A data call was answered 401 even after the access token was refreshed.
    #[error("QBO refused a freshly refreshed access token (401): {}", show(.fault))]
    Unauthorized {
        /// The fault, when the body had one.
        fault: Option<Fault>,
    },
    /// 403: the token is not authorized for this realm (code 3100).
    #[error("QBO refused access to the realm (403): {}", show(.fault))]
    Forbidden {
        /// The fault, when the body had one.
        fault: Option<Fault>,
    },
    /// 429 (or a 3001 fault) on every attempt.
    #[error("QBO throttled the realm after {attempts} attempts: {}", show(.fault))]
    Throttled {
        /// Attempts made.
        attempts: u32,
        /// `Retry-After` of the last answer, when given.
        retry_after: Option<Duration>,
        /// The fault, when the body had one.
        fault: Option<Fault>,
    },
    /// 5xx (or a system fault) on every attempt, or on a write the policy does not repeat.
    #[error("QBO server error ({status}) after {attempts} attempts: {message}")]
    Server {
        /// Last HTTP status.
        status: u16,
        /// Attempts made.
        attempts: u32,
        /// The fault, when the body had one.
        fault: Option<Fault>,
        /// The fault or the start of the body.
        message: String,
    },
    /// Connection refused, reset or timed out on every attempt.
    #[error("cannot reach QBO after {attempts} attempts: {source}")]
    Transport {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        #[source]
        source: reqwest::Error,
    },
    /// Fault 610: the object does not exist (or is inactive where an active one is needed).
    #[error("QBO object not found: {0}")]
    NotFound(Fault),
    /// Fault 5010: the `SyncToken` is stale; read the object again and repeat with its token.
    #[error("QBO stale object: {0}")]
    StaleObject(Fault),
    /// Fault 6240: the name is already used. Callers link to the existing entity instead of
    /// creating one; the detail names the list that holds it.
    #[error("QBO duplicate name: {0}")]
    DuplicateName(Fault),
    /// Any other fault (validation 2000–4999, business rules 6000s, unsupported operation, …).
    #[error("QBO refused the request ({status}): {fault}")]
    Validation {
        /// HTTP status (400, or 200 for a fault in a 200).
        status: u16,
        /// The fault.
        fault: Fault,
    },
    /// An answer that is neither the documented shape nor a fault (unparseable body, missing
    /// envelope, an unexpected status without a fault).
    #[error("malformed QBO answer ({status}): {message}")]
    Protocol {
        /// HTTP status.
        status: u16,
        /// What was wrong, with the start of the body.
        message: String,
    },
    /// A CDC request reaching further back than QBO's 30-day look-back: do a full pull instead.
    #[error("CDC changedSince {changed_since} is older than the {oldest} QBO allows")]
    CdcTooOld {
        /// What was asked for.
        changed_since: DateTime<Utc>,
        /// The oldest instant the client sends.
        oldest: DateTime<Utc>,
    },
    /// The rate/concurrency limiter could not grant a permit. Failure policy: closed — no call
    /// is made without a permit.
    #[error("rate limiter unavailable: {0}")]
    Limiter(String),
    /// The token store failed (or rotations kept colliding). Failure policy: closed — no token
    /// endpoint call whose result could not be stored.
    #[error("token store unavailable: {0}")]
    TokenStore(String),
    /// The caller asked for something the client does not send (a bad entity or field name,
    /// an empty `IN`, a create with an `Id`, …).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

fn show(fault: &Option<Fault>) -> String {
    fault
        .as_ref()
        .map_or_else(|| "no fault body".to_owned(), Fault::to_string)
}

impl Error {
    /// What the caller should do next.
    pub fn disposition(&self) -> Disposition {
        match self {
            Error::Throttled { .. }
            | Error::Server { .. }
            | Error::Transport { .. }
            | Error::Limiter(_)
            | Error::TokenStore(_) => Disposition::Transient,
            Error::InvalidGrant { .. }
            | Error::InvalidClient { .. }
            | Error::NotConnected { .. }
            | Error::Unauthorized { .. }
            | Error::Forbidden { .. } => Disposition::Broken,
            Error::TokenRefused { .. }
            | Error::NotFound(_)
            | Error::StaleObject(_)
            | Error::DuplicateName(_)
            | Error::Validation { .. }
            | Error::Protocol { .. }
            | Error::CdcTooOld { .. }
            | Error::InvalidRequest(_) => Disposition::Rejected,
        }
    }

    /// The fault QBO answered, when the error is one.
    pub fn fault(&self) -> Option<&Fault> {
        match self {
            Error::NotFound(f) | Error::StaleObject(f) | Error::DuplicateName(f) => Some(f),
            Error::Validation { fault, .. } => Some(fault),
            Error::Unauthorized { fault }
            | Error::Forbidden { fault }
            | Error::Throttled { fault, .. }
            | Error::Server { fault, .. } => fault.as_ref(),
            _ => None,
        }
    }

    /// The fault code (`6240`), when the error is a fault.
    pub fn code(&self) -> Option<u32> {
        self.fault().and_then(Fault::code)
    }
}

/// At most 200 characters of a body, for messages.
pub(crate) fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::FaultError;

    fn fault(code: &str) -> Fault {
        Fault {
            kind: Some("ValidationFault".into()),
            errors: vec![FaultError {
                code: code.into(),
                message: "m".into(),
                detail: Some("d".into()),
                element: None,
            }],
        }
    }

    #[test]
    fn dispositions_follow_what_the_caller_does_next() {
        assert_eq!(
            Error::InvalidGrant {
                message: "x".into()
            }
            .disposition(),
            Disposition::Broken
        );
        assert_eq!(
            Error::Limiter("down".into()).disposition(),
            Disposition::Transient
        );
        let dup = Error::DuplicateName(fault("6240"));
        assert_eq!(dup.disposition(), Disposition::Rejected);
        assert_eq!(dup.code(), Some(6240));
        assert_eq!(dup.fault().and_then(Fault::detail), Some("d"));
        assert_eq!(
            Error::Throttled {
                attempts: 3,
                retry_after: None,
                fault: None
            }
            .to_string(),
            "QBO throttled the realm after 3 attempts: no fault body"
        );
    }
}
