//! One HTTP exchange and the retry decision after a failed attempt, shared by the token endpoint
//! ([`crate::oauth`]) and the data API ([`crate::client`]). The schedule is
//! [`attrsync_http_retry::backoff_delay`]; what counts as retryable is decided by the callers.

use std::time::Duration;

use attrsync_http_retry::{RetryPolicy, backoff_delay, parse_retry_after};
use reqwest::{RequestBuilder, header::RETRY_AFTER};

use crate::{
    error::Error,
    fault::Fault,
    stats::{Counters, bump},
};

/// A received answer, body read whole.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<Duration>,
    /// Intuit's trace id (`intuit_tid`), for logs and support tickets.
    pub(crate) intuit_tid: Option<String>,
    pub(crate) body: Vec<u8>,
}

pub(crate) async fn exchange(req: RequestBuilder) -> Result<Answer, reqwest::Error> {
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let header = |name| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    // QBO does not document Retry-After (reference §3.7); honoured when present, never needed.
    let retry_after =
        header(RETRY_AFTER.as_str()).and_then(|v| parse_retry_after(&v, chrono::Utc::now()));
    let intuit_tid = header("intuit_tid");
    let body = resp.bytes().await?.to_vec();
    Ok(Answer {
        status,
        retry_after,
        intuit_tid,
        body,
    })
}

/// A failed attempt that may be repeated.
#[derive(Debug)]
pub(crate) enum Failure {
    Throttled {
        retry_after: Option<Duration>,
        fault: Option<Fault>,
    },
    Server {
        status: u16,
        retry_after: Option<Duration>,
        fault: Option<Fault>,
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
            Failure::Throttled { retry_after, fault } => Error::Throttled {
                attempts,
                retry_after,
                fault,
            },
            Failure::Server {
                status,
                fault,
                message,
                ..
            } => Error::Server {
                status,
                attempts,
                fault,
                message,
            },
            Failure::Transport(source) => Error::Transport { attempts, source },
        }
    }

    fn describe(&self) -> String {
        match self {
            Failure::Throttled { .. } => "429".to_owned(),
            Failure::Server { status, .. } => status.to_string(),
            Failure::Transport(e) => e.to_string(),
        }
    }
}

/// Applies a [`RetryPolicy`]: decides, waits, counts.
#[derive(Debug)]
pub(crate) struct Retrier<'a> {
    pub(crate) policy: &'a RetryPolicy,
    pub(crate) counters: &'a Counters,
}

impl Retrier<'_> {
    /// After failed attempt `attempt` (1-based): waits and returns `Ok` when another attempt is
    /// allowed (`retryable` and attempts left), else the typed error.
    pub(crate) async fn after_failure(
        &self,
        what: &str,
        attempt: u32,
        failure: Failure,
        retryable: bool,
    ) -> Result<(), Error> {
        if matches!(failure, Failure::Throttled { .. }) {
            bump(&self.counters.throttled);
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
        tracing::warn!(what, attempt, ?delay, failure = %failure.describe(), "qbo call failed, retrying");
        bump(&self.counters.retries);
        tokio::time::sleep(delay).await;
        Ok(())
    }
}
