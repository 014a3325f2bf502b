//! Typed errors of the Fyle client, classified by what the caller does next
//! ([`Error::disposition`]).
//!
//! Status mapping (reference §1.3): 400 → [`Error::WrongParams`] with the typed body
//! (`ValidationError`, `BulkError`, `IntegrityError` or a plain message); 401/498 on a data call,
//! after one token refresh and one retry → [`Error::InvalidToken`]; 401/404 from the token
//! endpoint → [`Error::InvalidCredentials`] (the refresh token or client is wrong or revoked: the
//! connection is broken until someone reconnects it); 403 → [`Error::NoPrivilege`]; 404 →
//! [`Error::NotFound`]; 429 → [`Error::RateLimited`]; 5xx → [`Error::Server`]; connection and
//! timeout failures → [`Error::Transport`]. The last three are returned only after the retries of
//! [`crate::RetryPolicy`] are spent.
//!
//! No variant carries a secret: bodies of the token endpoint are scrubbed of the client secret and
//! refresh token before they are kept, access tokens never enter an error, and URLs (which reqwest
//! errors print) carry no credentials.

use std::{fmt, time::Duration};

use serde::Deserialize;
use serde_json::Value;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a caller should do about an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Try again later (rate limit, server error, network, limiter unavailable): nothing is wrong
    /// with the request or the connection.
    Transient,
    /// The Fyle connection is broken (credentials revoked or wrong, token refused after a fresh
    /// one was fetched): stop calling Fyle for this org until it is reconnected.
    Broken,
    /// Fyle refused this request (bad parameters, no privilege, not found, unexpected status):
    /// repeating it unchanged will fail again.
    Rejected,
}

/// Why a Fyle call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 400: the request's parameters or data were refused.
    #[error("Fyle refused the request (400): {0}")]
    WrongParams(BadRequest),
    /// The token endpoint refused the client or refresh token (401 "wrong client secret or/and
    /// refresh token", 404 "client ID doesn't exist"): the connection must be re-established.
    #[error("Fyle refused the credentials ({status}): {message}")]
    InvalidCredentials {
        /// HTTP status of the token endpoint.
        status: u16,
        /// Fyle's message (scrubbed of secrets).
        message: String,
    },
    /// A data call was answered 401/498 even with a freshly refreshed access token.
    #[error("Fyle refused a freshly refreshed access token ({status}): {message}")]
    InvalidToken {
        /// 401 or 498.
        status: u16,
        /// Fyle's message.
        message: String,
    },
    /// 403.
    #[error("no privilege for this Fyle request (403): {message}")]
    NoPrivilege {
        /// Fyle's message.
        message: String,
    },
    /// 404.
    #[error("Fyle resource not found (404): {message}")]
    NotFound {
        /// Fyle's message.
        message: String,
    },
    /// 429 on every attempt.
    #[error("Fyle rate limit (429) after {attempts} attempts: {message}")]
    RateLimited {
        /// Attempts made.
        attempts: u32,
        /// `Retry-After` of the last answer, when given.
        retry_after: Option<Duration>,
        /// Fyle's message.
        message: String,
    },
    /// 5xx on every attempt (or on a write the policy does not repeat).
    #[error("Fyle server error ({status}) after {attempts} attempts: {message}")]
    Server {
        /// Last status.
        status: u16,
        /// Attempts made.
        attempts: u32,
        /// Fyle's message.
        message: String,
    },
    /// Connection refused, reset or timed out on every attempt.
    #[error("cannot reach Fyle after {attempts} attempts: {source}")]
    Transport {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        #[source]
        source: reqwest::Error,
    },
    /// Any other status (e.g. 409).
    #[error("unexpected Fyle answer ({status}): {message}")]
    UnexpectedStatus {
        /// HTTP status.
        status: u16,
        /// Fyle's message or the start of the body.
        message: String,
    },
    /// A 2xx answer that does not have the documented shape, or a list whose order the pager
    /// cannot rely on. Failure policy: closed — a pass that cannot prove its order returns no rows.
    #[error("malformed Fyle answer: {0}")]
    Protocol(String),
    /// The rate limiter could not grant a permit (e.g. the shared lease store is down).
    /// Failure policy: closed — no call is made without a permit, so replicas never exceed the
    /// org's budget together.
    #[error("rate limiter unavailable: {0}")]
    Limiter(String),
    /// The caller asked for something the client does not do (e.g. its own `order` on a
    /// `list_all`, whose order the pager owns).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl Error {
    /// What the caller should do next.
    pub fn disposition(&self) -> Disposition {
        match self {
            Error::RateLimited { .. }
            | Error::Server { .. }
            | Error::Transport { .. }
            | Error::Limiter(_) => Disposition::Transient,
            Error::InvalidCredentials { .. } | Error::InvalidToken { .. } => Disposition::Broken,
            Error::WrongParams(_)
            | Error::NoPrivilege { .. }
            | Error::NotFound { .. }
            | Error::UnexpectedStatus { .. }
            | Error::Protocol(_)
            | Error::InvalidRequest(_) => Disposition::Rejected,
        }
    }

    /// The HTTP status Fyle answered, when the error is an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::WrongParams(_) => Some(400),
            Error::InvalidCredentials { status, .. }
            | Error::InvalidToken { status, .. }
            | Error::Server { status, .. }
            | Error::UnexpectedStatus { status, .. } => Some(*status),
            Error::NoPrivilege { .. } => Some(403),
            Error::NotFound { .. } => Some(404),
            Error::RateLimited { .. } => Some(429),
            Error::Transport { .. }
            | Error::Protocol(_)
            | Error::Limiter(_)
            | Error::InvalidRequest(_) => None,
        }
    }
}

/// The body of a 400 (reference §1.3): `{"data": …, "error": "<Type>", "message": …}` or just
/// `{"message": …}`.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRequest {
    /// Which kind of refusal, with its typed data.
    pub kind: BadRequestKind,
    /// `message`, when not null.
    pub message: Option<String>,
}

/// The `error` of a typed 400 body.
#[derive(Debug, Clone, PartialEq)]
pub enum BadRequestKind {
    /// `ValidationError`: `data` maps row index (as a string) → field → messages.
    Validation(Value),
    /// `BulkError`: one entry per refused row of a bulk post.
    Bulk(Vec<BulkRowError>),
    /// `IntegrityError`: a uniqueness violation; `message` names the values.
    Integrity,
    /// Another `error` name, with its `data`.
    Other {
        /// The `error` field.
        error: String,
        /// The `data` field.
        data: Value,
    },
    /// No `error` field: a plain `{"message": …}` (or a body that is not JSON).
    Plain,
}

/// One row of a `BulkError`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BulkRowError {
    /// The value identifying the row (string or integer).
    #[serde(default)]
    pub key: Value,
    /// Why the row was refused.
    #[serde(default)]
    pub message: String,
    /// Index of the row in the posted `data` array.
    pub row: usize,
}

impl BadRequest {
    /// Reads a 400 body; anything unreadable becomes [`BadRequestKind::Plain`] with the text.
    pub fn parse(body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            data: Value,
            #[serde(default)]
            error: Option<String>,
            #[serde(default)]
            message: Option<String>,
        }
        let Ok(raw) = serde_json::from_slice::<Raw>(body) else {
            return Self {
                kind: BadRequestKind::Plain,
                message: Some(snippet(body)),
            };
        };
        let kind = match raw.error.as_deref() {
            None => BadRequestKind::Plain,
            Some("ValidationError") => BadRequestKind::Validation(raw.data),
            Some("IntegrityError") => BadRequestKind::Integrity,
            Some("BulkError") => {
                match serde_json::from_value::<Vec<BulkRowError>>(raw.data.clone()) {
                    Ok(rows) => BadRequestKind::Bulk(rows),
                    Err(_) => BadRequestKind::Other {
                        error: "BulkError".into(),
                        data: raw.data,
                    },
                }
            }
            Some(other) => BadRequestKind::Other {
                error: other.to_owned(),
                data: raw.data,
            },
        };
        Self {
            kind,
            message: raw.message,
        }
    }
}

impl fmt::Display for BadRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            BadRequestKind::Validation(data) => write!(f, "ValidationError {data}")?,
            BadRequestKind::Bulk(rows) => {
                write!(f, "BulkError on {} row(s)", rows.len())?;
                for r in rows.iter().take(3) {
                    write!(f, "; row {} ({}): {}", r.row, r.key, r.message)?;
                }
            }
            BadRequestKind::Integrity => f.write_str("IntegrityError")?,
            BadRequestKind::Other { error, .. } => f.write_str(error)?,
            BadRequestKind::Plain => f.write_str("refused")?,
        }
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

/// The `message` of a JSON error body, else the start of the body as text.
pub(crate) fn message_of(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| snippet(body))
}

/// At most 200 characters of a body, for messages.
fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_bodies_of_the_reference_parse() {
        let v = BadRequest::parse(
            br#"{"data": {"0": {"user_email": ["Missing data for required field."]}}, "error": "ValidationError", "message": null}"#,
        );
        assert!(
            matches!(&v.kind, BadRequestKind::Validation(d) if d["0"]["user_email"][0] == "Missing data for required field.")
        );
        assert_eq!(v.message, None);

        let b = BadRequest::parse(
            br#"{"data": [{"key": "new.user@fyle.in", "message": "Invalid / disabled department found", "row": 0}], "error": "BulkError", "message": null}"#,
        );
        assert_eq!(
            b.kind,
            BadRequestKind::Bulk(vec![BulkRowError {
                key: "new.user@fyle.in".into(),
                message: "Invalid / disabled department found".into(),
                row: 0
            }])
        );

        let i = BadRequest::parse(
            br#"{"data": null, "error": "IntegrityError", "message": "The values (\"a\") already exists"}"#,
        );
        assert_eq!(i.kind, BadRequestKind::Integrity);
        assert!(i.to_string().contains("already exists"));

        let p = BadRequest::parse(br#"{"message": "limit must be between 1 and 200"}"#);
        assert_eq!(p.kind, BadRequestKind::Plain);
        let t = BadRequest::parse(b"<html>bad gateway</html>");
        assert_eq!(t.message.as_deref(), Some("<html>bad gateway</html>"));
    }

    #[test]
    fn dispositions_follow_what_the_caller_does_next() {
        let broken = Error::InvalidCredentials {
            status: 401,
            message: "x".into(),
        };
        assert_eq!(broken.disposition(), Disposition::Broken);
        assert_eq!(
            Error::Limiter("down".into()).disposition(),
            Disposition::Transient
        );
        assert_eq!(
            Error::NotFound {
                message: "x".into()
            }
            .disposition(),
            Disposition::Rejected
        );
    }
}
