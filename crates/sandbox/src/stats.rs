//! Request counters and a bounded request log, per endpoint, so benchmarks can count the API calls
//! a sync makes (`GET /_sandbox/stats`).
//!
//! Endpoints are named by [`endpoint_key`]: the method plus the path with variable segments
//! replaced (`GET /v3/company/{realm}/query`, `GET /v3/company/{realm}/customer/{id}`). Calls to the
//! `/_sandbox` admin API are not counted. The log keeps the most recent [`LOG_CAPACITY`] entries.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Mutex,
};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::faults::{Side, lock};

/// Entries kept in the request log and in the webhook log.
pub const LOG_CAPACITY: usize = 20_000;

/// Names an endpoint: method plus normalised path (trailing slash removed, realm and ids replaced).
pub fn endpoint_key(method: &str, path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    let segs: Vec<&str> = trimmed.split('/').filter(|s| !s.is_empty()).collect();
    let mut out = String::with_capacity(path.len() + 16);
    out.push_str(&method.to_ascii_uppercase());
    out.push(' ');
    if segs.is_empty() {
        out.push('/');
        return out;
    }
    let qbo = segs.len() >= 3 && segs[0] == "v3" && segs[1] == "company";
    for (i, seg) in segs.iter().enumerate() {
        out.push('/');
        if qbo && i == 2 {
            out.push_str("{realm}");
        } else if qbo && i == 4 {
            out.push_str("{id}");
        } else {
            out.push_str(seg);
        }
    }
    out
}

/// Counters of one endpoint.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EndpointStats {
    /// Requests received.
    pub count: u64,
    /// Requests per response status.
    pub by_status: BTreeMap<u16, u64>,
    /// Sum of handling time in milliseconds.
    pub total_ms: f64,
}

/// One request in the log.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    /// Increasing sequence number (use `?since=` to read only newer entries).
    pub seq: u64,
    /// When the request finished.
    pub at: DateTime<Utc>,
    /// Which API.
    pub side: Side,
    /// Method.
    pub method: String,
    /// Path as received.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Endpoint key.
    pub endpoint: String,
    /// Response status.
    pub status: u16,
    /// Handling time.
    pub ms: f64,
}

/// Outgoing webhook counters of one side.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WebhookStats {
    /// Messages produced by changes.
    pub queued: u64,
    /// HTTP POSTs answered 2xx.
    pub delivered: u64,
    /// POSTs that failed after all retries.
    pub failed: u64,
    /// Messages dropped by a fault rule.
    pub dropped: u64,
    /// Extra copies sent by a fault rule.
    pub duplicated: u64,
}

/// One outgoing webhook POST.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookLogEntry {
    /// When it was attempted.
    pub at: DateTime<Utc>,
    /// Which API sent it.
    pub side: Side,
    /// Target URL.
    pub url: String,
    /// Response status, or `None` when the connection failed.
    pub status: Option<u16>,
    /// Attempt number, from 1.
    pub attempt: u32,
}

/// A point-in-time copy of every counter.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatsSnapshot {
    /// Requests counted in total (both sides).
    pub total: u64,
    /// Per endpoint key, prefixed by side (`fyle GET /platform/v1/admin/categories`).
    pub endpoints: BTreeMap<String, EndpointStats>,
    /// Outgoing webhook counters per side.
    pub webhooks: BTreeMap<Side, WebhookStats>,
    /// Recent requests (oldest first).
    pub log: Vec<LogEntry>,
    /// Recent webhook POSTs (oldest first).
    pub webhook_log: Vec<WebhookLogEntry>,
}

impl StatsSnapshot {
    /// Requests counted for one endpoint key on a side (0 if none).
    pub fn count(&self, side: Side, endpoint: &str) -> u64 {
        self.endpoints
            .get(&format!("{} {endpoint}", side.as_str()))
            .map_or(0, |e| e.count)
    }
}

#[derive(Debug, Default)]
struct Inner {
    seq: u64,
    total: u64,
    endpoints: BTreeMap<String, EndpointStats>,
    log: VecDeque<LogEntry>,
    webhooks: BTreeMap<Side, WebhookStats>,
    webhook_log: VecDeque<WebhookLogEntry>,
}

/// Thread-safe counters shared by both servers.
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<Inner>,
}

/// A finished request to record.
#[derive(Debug)]
pub struct Finished<'a> {
    /// Which API.
    pub side: Side,
    /// Method.
    pub method: &'a str,
    /// Path.
    pub path: &'a str,
    /// Query string.
    pub query: &'a str,
    /// Endpoint key.
    pub endpoint: &'a str,
    /// Status.
    pub status: u16,
    /// Time taken.
    pub ms: f64,
    /// When.
    pub at: DateTime<Utc>,
}

impl Stats {
    /// Records one finished request.
    pub fn record(&self, f: Finished<'_>) {
        let mut inner = lock(&self.inner);
        inner.seq += 1;
        inner.total += 1;
        let seq = inner.seq;
        let e = inner
            .endpoints
            .entry(format!("{} {}", f.side.as_str(), f.endpoint))
            .or_default();
        e.count += 1;
        *e.by_status.entry(f.status).or_default() += 1;
        e.total_ms += f.ms;
        if inner.log.len() >= LOG_CAPACITY {
            inner.log.pop_front();
        }
        inner.log.push_back(LogEntry {
            seq,
            at: f.at,
            side: f.side,
            method: f.method.to_owned(),
            path: f.path.to_owned(),
            query: f.query.to_owned(),
            endpoint: f.endpoint.to_owned(),
            status: f.status,
            ms: f.ms,
        });
    }

    /// Applies `f` to one side's webhook counters.
    pub fn webhook(&self, side: Side, f: impl FnOnce(&mut WebhookStats)) {
        f(lock(&self.inner).webhooks.entry(side).or_default());
    }

    /// Records one webhook POST attempt.
    pub fn webhook_attempt(&self, entry: WebhookLogEntry) {
        let mut inner = lock(&self.inner);
        if inner.webhook_log.len() >= LOG_CAPACITY {
            inner.webhook_log.pop_front();
        }
        inner.webhook_log.push_back(entry);
    }

    /// Copies the counters; the log only from `since` (exclusive) and only if `with_log`.
    pub fn snapshot(&self, with_log: bool, since: u64) -> StatsSnapshot {
        let inner = lock(&self.inner);
        StatsSnapshot {
            total: inner.total,
            endpoints: inner.endpoints.clone(),
            webhooks: inner.webhooks.clone(),
            log: if with_log {
                inner
                    .log
                    .iter()
                    .filter(|e| e.seq > since)
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            },
            webhook_log: if with_log {
                inner.webhook_log.iter().cloned().collect()
            } else {
                Vec::new()
            },
        }
    }

    /// Zeroes every counter and empties the logs.
    pub fn reset(&self) {
        let mut inner = lock(&self.inner);
        let seq = inner.seq;
        *inner = Inner {
            seq,
            ..Inner::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_keys_replace_realm_and_ids() {
        assert_eq!(
            endpoint_key("get", "/v3/company/9130357766900456/query"),
            "GET /v3/company/{realm}/query"
        );
        assert_eq!(
            endpoint_key("GET", "/v3/company/1/taxrate/6"),
            "GET /v3/company/{realm}/taxrate/{id}"
        );
        assert_eq!(
            endpoint_key("POST", "/oauth/cluster/"),
            "POST /oauth/cluster"
        );
        assert_eq!(
            endpoint_key("GET", "/platform/v1/admin/categories"),
            "GET /platform/v1/admin/categories"
        );
    }

    #[test]
    fn record_counts_per_side_and_status() {
        let stats = Stats::default();
        for status in [200, 200, 429] {
            stats.record(Finished {
                side: Side::Qbo,
                method: "GET",
                path: "/v3/company/1/query",
                query: "query=select",
                endpoint: "GET /v3/company/{realm}/query",
                status,
                ms: 1.0,
                at: Utc::now(),
            });
        }
        let snap = stats.snapshot(true, 1);
        assert_eq!(snap.count(Side::Qbo, "GET /v3/company/{realm}/query"), 3);
        assert_eq!(snap.count(Side::Fyle, "GET /v3/company/{realm}/query"), 0);
        assert_eq!(snap.log.len(), 2, "since=1 skips the first entry");
        stats.reset();
        assert_eq!(stats.snapshot(false, 0).total, 0);
    }
}
