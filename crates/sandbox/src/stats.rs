//! Request counters and a bounded request log, so benchmarks can count the API calls a sync makes
//! and what they cost (`GET /_sandbox/stats`, zeroed by `POST /_sandbox/stats/reset`).
//!
//! Requests are counted per endpoint and per tenant (Fyle org or QBO realm), with the statuses
//! served, the 429s among them (`throttled`) and the bytes received (request `Content-Length`) and
//! sent (response body). Endpoints are named by [`endpoint_key`]: the method plus the path with
//! variable segments replaced (`GET /v3/company/{realm}/query`,
//! `GET /v3/company/{realm}/customer/{id}`). The tenant of a QBO call is the realm in its path; of
//! a Fyle call, the org of its bearer token (calls refused before the token is read — a bad token,
//! the rate limit, an injected fault — and token-endpoint calls have no tenant). Calls to the
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
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
}

/// Counters of one tenant (a Fyle org or a QBO realm).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TenantStats {
    /// Requests received.
    pub count: u64,
    /// Requests per response status.
    pub by_status: BTreeMap<u16, u64>,
    /// 429 answers served.
    pub throttled: u64,
    /// Request body bytes received.
    pub bytes_in: u64,
    /// Response body bytes sent.
    pub bytes_out: u64,
    /// Requests per endpoint key.
    pub endpoints: BTreeMap<String, u64>,
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
    /// Org or realm, when known.
    pub tenant: Option<String>,
    /// Response body bytes.
    pub bytes_out: u64,
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
    /// 429 answers served (both sides).
    pub throttled: u64,
    /// Request body bytes received (both sides).
    pub bytes_in: u64,
    /// Response body bytes sent (both sides).
    pub bytes_out: u64,
    /// Per endpoint key, prefixed by side (`fyle GET /platform/v1/admin/categories`).
    pub endpoints: BTreeMap<String, EndpointStats>,
    /// Per tenant, prefixed by side (`fyle orNoatdUnm1w`, `qbo 9130357766900456`).
    pub tenants: BTreeMap<String, TenantStats>,
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

    /// Requests counted on a side for every endpoint key `matches` (the key without its side,
    /// e.g. `GET /v3/company/{realm}/cdc`).
    pub fn count_where(&self, side: Side, matches: impl Fn(&str) -> bool) -> u64 {
        let prefix = format!("{} ", side.as_str());
        self.endpoints
            .iter()
            .filter(|(key, _)| key.strip_prefix(&prefix).is_some_and(&matches))
            .map(|(_, s)| s.count)
            .sum()
    }

    /// Counters of one org (Fyle) or realm (QBO).
    pub fn tenant(&self, side: Side, id: &str) -> Option<&TenantStats> {
        self.tenants.get(&format!("{} {id}", side.as_str()))
    }
}

#[derive(Debug, Default)]
struct Inner {
    seq: u64,
    total: u64,
    throttled: u64,
    bytes_in: u64,
    bytes_out: u64,
    endpoints: BTreeMap<String, EndpointStats>,
    tenants: BTreeMap<String, TenantStats>,
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
    /// Org or realm, when known.
    pub tenant: Option<&'a str>,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
}

impl Stats {
    /// Records one finished request.
    pub fn record(&self, f: Finished<'_>) {
        let mut inner = lock(&self.inner);
        let throttled = u64::from(f.status == 429);
        inner.seq += 1;
        inner.total += 1;
        inner.throttled += throttled;
        inner.bytes_in += f.bytes_in;
        inner.bytes_out += f.bytes_out;
        let seq = inner.seq;
        let e = inner
            .endpoints
            .entry(format!("{} {}", f.side.as_str(), f.endpoint))
            .or_default();
        e.count += 1;
        *e.by_status.entry(f.status).or_default() += 1;
        e.total_ms += f.ms;
        e.bytes_in += f.bytes_in;
        e.bytes_out += f.bytes_out;
        if let Some(tenant) = f.tenant {
            let t = inner
                .tenants
                .entry(format!("{} {tenant}", f.side.as_str()))
                .or_default();
            t.count += 1;
            *t.by_status.entry(f.status).or_default() += 1;
            t.throttled += throttled;
            t.bytes_in += f.bytes_in;
            t.bytes_out += f.bytes_out;
            *t.endpoints.entry(f.endpoint.to_owned()).or_default() += 1;
        }
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
            tenant: f.tenant.map(str::to_owned),
            bytes_out: f.bytes_out,
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
            throttled: inner.throttled,
            bytes_in: inner.bytes_in,
            bytes_out: inner.bytes_out,
            endpoints: inner.endpoints.clone(),
            tenants: inner.tenants.clone(),
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
                tenant: Some("1"),
                bytes_in: 0,
                bytes_out: 100,
            });
        }
        let snap = stats.snapshot(true, 1);
        assert_eq!(snap.count(Side::Qbo, "GET /v3/company/{realm}/query"), 3);
        assert_eq!((snap.throttled, snap.bytes_out), (1, 300));
        let realm = snap.tenant(Side::Qbo, "1").expect("realm 1 counted");
        assert_eq!((realm.count, realm.throttled), (3, 1));
        assert!(snap.tenant(Side::Fyle, "1").is_none());
        assert_eq!(snap.count(Side::Fyle, "GET /v3/company/{realm}/query"), 0);
        assert_eq!(snap.count_where(Side::Qbo, |e| e.ends_with("/query")), 3);
        assert_eq!(snap.count_where(Side::Qbo, |e| e.ends_with("/cdc")), 0);
        assert_eq!(
            snap.count_where(Side::Fyle, |_| true),
            0,
            "another side's endpoints are not counted"
        );
        assert_eq!(snap.log.len(), 2, "since=1 skips the first entry");
        stats.reset();
        let after = stats.snapshot(false, 0);
        assert_eq!((after.total, after.throttled, after.bytes_out), (0, 0, 0));
        assert!(after.tenants.is_empty());
    }
}
