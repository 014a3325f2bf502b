//! Counters of one client (and its clones), for tests, metrics and API-budget accounting: QBO
//! allows 500 requests per minute per realm, so callers and benchmarks count what they spend.

use std::sync::atomic::{AtomicU64, Ordering};

/// What a data-API request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// `GET`/`POST /query` (pages and counts).
    Query,
    /// `GET /{entity}/{id}`.
    Read,
    /// `GET /cdc`.
    Cdc,
    /// `POST /{entity}` (create or sparse update).
    Write,
}

/// A snapshot of a client's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Data-API requests sent, every attempt (the number QBO counts against the realm).
    pub requests: u64,
    /// …of which queries.
    pub queries: u64,
    /// …of which reads by id.
    pub reads: u64,
    /// …of which CDC calls.
    pub cdc: u64,
    /// …of which writes.
    pub writes: u64,
    /// Requests sent to the token endpoint, every attempt.
    pub token_requests: u64,
    /// Refresh grants QBO answered with new tokens.
    pub refreshes: u64,
    /// Authorization codes exchanged.
    pub code_exchanges: u64,
    /// 429 answers (and 3001 faults) seen, data API and token endpoint.
    pub throttled: u64,
    /// Attempts repeated after a 429, 5xx or transport failure.
    pub retries: u64,
    /// Data calls repeated once after a 401 and a token refresh.
    pub auth_retries: u64,
    /// Rotations refused by the token store because another holder rotated first.
    pub lost_races: u64,
    /// Access tokens taken from the store that another holder (or an earlier refresh) stored.
    pub adopted_tokens: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) queries: AtomicU64,
    pub(crate) reads: AtomicU64,
    pub(crate) cdc: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) token_requests: AtomicU64,
    pub(crate) refreshes: AtomicU64,
    pub(crate) code_exchanges: AtomicU64,
    pub(crate) throttled: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) auth_retries: AtomicU64,
    pub(crate) lost_races: AtomicU64,
    pub(crate) adopted_tokens: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn request(&self, kind: RequestKind) {
        bump(match kind {
            RequestKind::Query => &self.queries,
            RequestKind::Read => &self.reads,
            RequestKind::Cdc => &self.cdc,
            RequestKind::Write => &self.writes,
        });
    }

    pub(crate) fn snapshot(&self) -> ClientStats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (queries, reads, cdc, writes) = (
            r(&self.queries),
            r(&self.reads),
            r(&self.cdc),
            r(&self.writes),
        );
        ClientStats {
            requests: queries + reads + cdc + writes,
            queries,
            reads,
            cdc,
            writes,
            token_requests: r(&self.token_requests),
            refreshes: r(&self.refreshes),
            code_exchanges: r(&self.code_exchanges),
            throttled: r(&self.throttled),
            retries: r(&self.retries),
            auth_retries: r(&self.auth_retries),
            lost_races: r(&self.lost_races),
            adopted_tokens: r(&self.adopted_tokens),
        }
    }
}
