//! Fault injection: rules that change how the next requests to an endpoint (or the next outgoing
//! webhooks) behave.
//!
//! A rule matches an endpoint key (see [`crate::stats::endpoint_key`], e.g.
//! `GET /platform/v1/admin/categories` or `GET /v3/company/{realm}/query`). The pattern may omit the
//! method (`/oauth/token`), end with `*` for a prefix match (`/platform/v1/admin/*`), or be `*`.
//! A rule first lets `skip` matching requests through untouched, then applies to `times` requests
//! (`None` = until cleared) and then disappears. Only the first applicable rule acts on a request.
//!
//! Failure policy: faults are opt-in and never apply to the `/_sandbox` admin API, so a test can
//! always inspect and clear them.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Which simulated service a rule targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The Fyle Platform API.
    Fyle,
    /// The QuickBooks Online API.
    Qbo,
}

impl Side {
    /// Lowercase name used in JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Fyle => "fyle",
            Side::Qbo => "qbo",
        }
    }
}

/// What an endpoint fault does to a matching request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultAction {
    /// Delay the request, then serve it normally.
    Latency {
        /// Added delay.
        ms: u64,
    },
    /// Answer 429 with the side's throttle body (QBO: the 3001 fault), optionally with `Retry-After`.
    Throttle {
        /// Seconds for the `Retry-After` header; omitted when `None`.
        #[serde(default)]
        retry_after: Option<u64>,
    },
    /// Answer a server error (default 500) with the side's error body.
    ServerError {
        /// HTTP status, 500–599.
        #[serde(default = "default_server_status")]
        status: u16,
    },
    /// Answer any status with an arbitrary JSON body.
    Status {
        /// HTTP status.
        status: u16,
        /// Body (defaults to `{}`).
        #[serde(default)]
        body: Option<serde_json::Value>,
        /// Seconds for the `Retry-After` header.
        #[serde(default)]
        retry_after: Option<u64>,
    },
    /// Expire every access token of the side, then serve the request (which then gets the side's
    /// expired-token 401 unless it authenticates afresh).
    ExpireTokens,
    /// Make a bulk POST fail with a `BulkError` naming row `row` (nothing in the batch is applied).
    BulkError {
        /// Index in the posted `data` array.
        row: usize,
        /// Message for the row (default "Simulated failure").
        #[serde(default)]
        message: Option<String>,
    },
}

fn default_server_status() -> u16 {
    500
}

/// An endpoint fault rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// Restrict to one side; `None` = both.
    #[serde(default)]
    pub side: Option<Side>,
    /// Endpoint pattern, see the module docs.
    pub endpoint: String,
    /// What to do.
    pub action: FaultAction,
    /// Matching requests to let through before acting.
    #[serde(default)]
    pub skip: u32,
    /// How many requests to act on; `None` = until cleared.
    #[serde(default)]
    pub times: Option<u32>,
}

/// What an outgoing-webhook fault does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WebhookFaultAction {
    /// Never deliver the message.
    Drop,
    /// Deliver the message twice.
    Duplicate,
    /// Hold the message back and deliver it after the next one.
    Reorder,
    /// Deliver the message after a delay (later messages may overtake it).
    Delay {
        /// Delay before sending.
        ms: u64,
    },
}

/// An outgoing-webhook fault rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookFaultRule {
    /// Restrict to one side; `None` = both.
    #[serde(default)]
    pub side: Option<Side>,
    /// What to do.
    pub action: WebhookFaultAction,
    /// Matching messages to let through first.
    #[serde(default)]
    pub skip: u32,
    /// How many messages to act on; `None` = until cleared.
    #[serde(default)]
    pub times: Option<u32>,
}

/// Does an endpoint pattern match an endpoint key (`"METHOD /path"`)?
pub fn pattern_matches(pattern: &str, key: &str) -> bool {
    let pattern = pattern.trim();
    if pattern == "*" {
        return true;
    }
    let (key_method, key_path) = key.split_once(' ').unwrap_or(("", key));
    let (method, path) = match pattern.split_once(' ') {
        Some((m, p)) => (Some(m), p.trim()),
        None => (None, pattern),
    };
    if method.is_some_and(|m| !m.eq_ignore_ascii_case(key_method)) {
        return false;
    }
    match path.strip_suffix('*') {
        Some(prefix) => key_path.starts_with(prefix),
        None => path.trim_end_matches('/') == key_path,
    }
}

/// Shared state of both rule lists.
#[derive(Debug, Default)]
pub struct Faults {
    endpoint: Mutex<Vec<(FaultRule, u32)>>,
    webhook: Mutex<Vec<(WebhookFaultRule, u32)>>,
}

fn consume<R>(
    rules: &mut Vec<(R, u32)>,
    applies: impl Fn(&R) -> bool,
    skip: impl Fn(&R) -> u32,
    times: impl Fn(&R) -> Option<u32>,
) -> Option<R>
where
    R: Clone,
{
    let idx = rules.iter().position(|(r, _)| applies(r))?;
    let (rule, seen) = &mut rules[idx];
    *seen += 1;
    if *seen <= skip(rule) {
        return None;
    }
    let acted = *seen - skip(rule);
    let out = rule.clone();
    if times(&out).is_some_and(|t| acted >= t) {
        rules.remove(idx);
    }
    Some(out)
}

impl Faults {
    /// Adds an endpoint rule.
    pub fn add(&self, rule: FaultRule) {
        lock(&self.endpoint).push((rule, 0));
    }

    /// Adds a webhook rule.
    pub fn add_webhook(&self, rule: WebhookFaultRule) {
        lock(&self.webhook).push((rule, 0));
    }

    /// Removes every rule.
    pub fn clear(&self) {
        lock(&self.endpoint).clear();
        lock(&self.webhook).clear();
    }

    /// Current endpoint and webhook rules.
    pub fn list(&self) -> (Vec<FaultRule>, Vec<WebhookFaultRule>) {
        (
            lock(&self.endpoint)
                .iter()
                .map(|(r, _)| r.clone())
                .collect(),
            lock(&self.webhook).iter().map(|(r, _)| r.clone()).collect(),
        )
    }

    /// The action for a request to `key` on `side`, consuming one use of the rule.
    /// `BulkError` rules only match bulk endpoints (paths ending in `/bulk`).
    pub fn take(&self, side: Side, key: &str) -> Option<FaultAction> {
        let mut rules = lock(&self.endpoint);
        consume(
            &mut rules,
            |r| {
                r.side.is_none_or(|s| s == side)
                    && pattern_matches(&r.endpoint, key)
                    && (!matches!(r.action, FaultAction::BulkError { .. })
                        || key.ends_with("/bulk"))
            },
            |r| r.skip,
            |r| r.times,
        )
        .map(|r| r.action)
    }

    /// The action for the next outgoing webhook on `side`, consuming one use of the rule.
    pub fn take_webhook(&self, side: Side) -> Option<WebhookFaultAction> {
        let mut rules = lock(&self.webhook);
        consume(
            &mut rules,
            |r| r.side.is_none_or(|s| s == side),
            |r| r.skip,
            |r| r.times,
        )
        .map(|r| r.action)
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the sandbox keeps
/// serving; a test that panicked already failed).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_method_path_and_prefix() {
        let key = "GET /platform/v1/admin/categories";
        assert!(pattern_matches("*", key));
        assert!(pattern_matches(key, key));
        assert!(pattern_matches("/platform/v1/admin/categories", key));
        assert!(pattern_matches("get /platform/v1/admin/*", key));
        assert!(!pattern_matches("POST /platform/v1/admin/categories", key));
        assert!(!pattern_matches("/platform/v1/admin/projects", key));
        assert!(pattern_matches("/oauth/cluster/", "POST /oauth/cluster"));
    }

    #[test]
    fn rules_skip_then_apply_times_then_vanish() {
        let faults = Faults::default();
        faults.add(FaultRule {
            side: Some(Side::Qbo),
            endpoint: "*".into(),
            action: FaultAction::ServerError { status: 503 },
            skip: 1,
            times: Some(2),
        });
        let key = "GET /v3/company/{realm}/query";
        assert_eq!(faults.take(Side::Fyle, key), None, "other side untouched");
        assert_eq!(faults.take(Side::Qbo, key), None, "first one skipped");
        assert!(faults.take(Side::Qbo, key).is_some());
        assert!(faults.take(Side::Qbo, key).is_some());
        assert_eq!(faults.take(Side::Qbo, key), None, "rule used up");
        assert!(faults.list().0.is_empty());
    }

    #[test]
    fn bulk_error_rules_only_hit_bulk_endpoints() {
        let faults = Faults::default();
        faults.add(FaultRule {
            side: None,
            endpoint: "*".into(),
            action: FaultAction::BulkError {
                row: 3,
                message: None,
            },
            skip: 0,
            times: Some(1),
        });
        assert_eq!(
            faults.take(Side::Fyle, "GET /platform/v1/admin/categories"),
            None
        );
        assert!(matches!(
            faults.take(Side::Fyle, "POST /platform/v1/admin/categories/bulk"),
            Some(FaultAction::BulkError { row: 3, .. })
        ));
    }

    #[test]
    fn webhook_rules_are_consumed_in_order() {
        let faults = Faults::default();
        faults.add_webhook(WebhookFaultRule {
            side: None,
            action: WebhookFaultAction::Drop,
            skip: 0,
            times: Some(1),
        });
        assert_eq!(
            faults.take_webhook(Side::Qbo),
            Some(WebhookFaultAction::Drop)
        );
        assert_eq!(faults.take_webhook(Side::Qbo), None);
    }
}
