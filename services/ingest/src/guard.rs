//! Abuse limits in front of both webhook edges, cheapest first.
//!
//! - **Per source IP** (`limits.per_ip_per_second`, `per_ip_burst`): before anything else, so a
//!   single client cannot spend the edge's work on guesses. The key is the TCP peer: behind a
//!   load balancer, set it to the balancer's rate or put the limit there.
//! - **In flight** (`limits.max_in_flight`): at most this many deliveries are being read,
//!   checked and stored at once; beyond, 503 with `Retry-After` — senders retry, the database
//!   keeps its pool for the deliveries it can finish.
//! - **Unknown workspaces** (`limits.unknown_workspace_ttl`): an id neither the projection nor
//!   mapping knows is remembered as unknown briefly, so repeated guesses cost no lookup.
//!
//! - **What a workspace accepts** ([`AuthCache`], `limits.auth_cache_ttl`): the workspace's
//!   projection row and opened credentials are kept in memory briefly, so a busy workspace's
//!   deliveries cost no lookups. A change made through this replica (`SetAuthMode`,
//!   `RotateWebhookSecret`) drops the entry at once; other replicas see it within the TTL —
//!   harmless for a rotation (the old secret stays valid for the overlap), and a mode change
//!   takes effect everywhere within the TTL. An entry holding a rotated-out secret is not used
//!   past that secret's overlap (`Credentials::reload_by`): the old secret is refused on time.
//!
//! The per-workspace token bucket lives in [`crate::http`] and is charged only after a
//! delivery authenticated, so strangers cannot spend a workspace's budget.

use std::{
    collections::HashMap,
    net::IpAddr,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix_web::HttpRequest;
use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use attrsync_kafka::workspaces::ProjectedWorkspace;

use crate::{auth::Credentials, config::LimitsConfig, fyle::Rejection};

/// The limits shared by every request of the edge.
pub struct Guard {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    in_flight: Arc<Semaphore>,
    unknown: Mutex<HashMap<i64, Instant>>,
    unknown_ttl: Duration,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("in_flight_available", &self.in_flight.available_permits())
            .finish_non_exhaustive()
    }
}

/// The most unknown ids remembered at once (older ones are forgotten first).
const MAX_UNKNOWN: usize = 100_000;

impl Guard {
    pub fn new(limits: &LimitsConfig) -> Self {
        let rate = NonZeroU32::new(limits.per_ip_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.per_ip_burst).unwrap_or(rate);
        Self {
            per_ip: governor::RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            unknown: Mutex::default(),
            unknown_ttl: limits.unknown_workspace_ttl,
        }
    }

    /// Admits a request: its IP's budget, then a place among those in flight (held by the
    /// returned permit until the answer).
    pub fn admit(&self, request: &HttpRequest) -> Result<OwnedSemaphorePermit, Rejection> {
        if let Some(ip) = request.peer_addr().map(|a| a.ip())
            && let Err(not_until) = self.per_ip.check_key(&ip)
        {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            return Err(Rejection::RateLimited {
                retry_after_secs: wait.as_secs() + 1,
            });
        }
        self.in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| Rejection::Busy)
    }

    /// Whether `workspace_id` was found unknown within the TTL.
    pub fn known_unknown(&self, workspace_id: i64) -> bool {
        self.unknown
            .lock()
            .ok()
            .and_then(|map| map.get(&workspace_id).copied())
            .is_some_and(|at| at.elapsed() < self.unknown_ttl)
    }

    pub fn remember_unknown(&self, workspace_id: i64) {
        if let Ok(mut map) = self.unknown.lock() {
            if map.len() >= MAX_UNKNOWN {
                let ttl = self.unknown_ttl;
                map.retain(|_, at| at.elapsed() < ttl);
                if map.len() >= MAX_UNKNOWN {
                    map.clear();
                }
            }
            map.insert(workspace_id, Instant::now());
        }
    }

    /// Forgets what expired (run every minute).
    pub fn prune(&self) {
        self.per_ip.retain_recent();
        let ttl = self.unknown_ttl;
        if let Ok(mut map) = self.unknown.lock() {
            map.retain(|_, at| at.elapsed() < ttl);
        }
    }
}

/// Recently loaded workspace facts and credentials (see the module doc).
pub struct AuthCache {
    entries: Mutex<HashMap<i64, (Instant, ProjectedWorkspace, Credentials)>>,
    ttl: Duration,
}

impl std::fmt::Debug for AuthCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl AuthCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            entries: Mutex::default(),
            ttl,
        }
    }

    pub fn get(&self, workspace_id: i64) -> Option<(ProjectedWorkspace, Credentials)> {
        let entries = self.entries.lock().ok()?;
        let (at, workspace, credentials) = entries.get(&workspace_id)?;
        let expired_secret = credentials
            .reload_by
            .is_some_and(|by| chrono::Utc::now() >= by);
        (at.elapsed() < self.ttl && !expired_secret)
            .then(|| (workspace.clone(), credentials.clone()))
    }

    pub fn put(&self, workspace_id: i64, workspace: ProjectedWorkspace, credentials: Credentials) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_UNKNOWN {
                let ttl = self.ttl;
                entries.retain(|_, (at, ..)| at.elapsed() < ttl);
            }
            entries.insert(workspace_id, (Instant::now(), workspace, credentials));
        }
    }

    /// Forgets a workspace whose credentials just changed here.
    pub fn forget(&self, workspace_id: i64) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&workspace_id);
        }
    }

    pub fn prune(&self) {
        let ttl = self.ttl;
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, (at, ..)| at.elapsed() < ttl);
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn limits(per_ip: u32, in_flight: usize) -> LimitsConfig {
        LimitsConfig {
            per_ip_per_second: per_ip,
            per_ip_burst: per_ip,
            max_in_flight: in_flight,
            unknown_workspace_ttl: Duration::from_secs(60),
            auth_cache_ttl: Duration::from_secs(2),
        }
    }

    #[test]
    fn one_ip_past_its_budget_is_429_and_another_ip_is_not() {
        let guard = Guard::new(&limits(2, 100));
        let from = |ip: &str| {
            TestRequest::default()
                .peer_addr(format!("{ip}:5000").parse().expect("addr"))
                .to_http_request()
        };
        let _a = guard.admit(&from("10.0.0.1")).expect("1st");
        let _b = guard.admit(&from("10.0.0.1")).expect("2nd");
        let refused = guard.admit(&from("10.0.0.1")).expect_err("3rd");
        assert_eq!(refused.status(), 429);
        assert!(guard.admit(&from("10.0.0.2")).is_ok());
    }

    #[test]
    fn past_the_in_flight_limit_requests_are_503_until_one_finishes() {
        let guard = Guard::new(&limits(1000, 2));
        let request = TestRequest::default().to_http_request();
        let first = guard.admit(&request).expect("1");
        let _second = guard.admit(&request).expect("2");
        let busy = guard.admit(&request).expect_err("3");
        assert_eq!((busy.status(), busy.retry_after()), (503, Some(1)));
        drop(first);
        assert!(guard.admit(&request).is_ok());
    }

    #[test]
    fn a_cached_entry_is_not_used_past_the_overlap_of_a_secret_it_holds() {
        use crate::auth::{AuthMode, Credentials};
        let cache = AuthCache::new(Duration::from_secs(60));
        let workspace = ProjectedWorkspace {
            workspace_id: 7,
            fyle_org_id: "orX".into(),
            qbo_realm_id: None,
            fyle_webhook_sync_enabled: true,
            fyle_webhook_by_type: serde_json::Value::Null,
            qbo_webhook_sync_enabled: true,
            qbo_webhook_by_entity: serde_json::Value::Null,
            deleted: false,
            version: 1,
            snapshot: Vec::new(),
        };
        let credentials = |reload_by| Credentials {
            mode: AuthMode::UrlToken,
            secrets: vec!["new".into(), "rotated-out".into()],
            reload_by,
        };
        let later = chrono::Utc::now() + chrono::Duration::seconds(30);
        cache.put(7, workspace.clone(), credentials(Some(later)));
        assert!(cache.get(7).is_some(), "within the overlap and the TTL");
        let past = chrono::Utc::now() - chrono::Duration::milliseconds(1);
        cache.put(7, workspace, credentials(Some(past)));
        assert!(
            cache.get(7).is_none(),
            "the rotated-out secret's overlap ended: load again, whatever the TTL"
        );
    }

    #[test]
    fn unknown_workspaces_are_remembered_for_the_ttl_only() {
        let mut config = limits(10, 10);
        config.unknown_workspace_ttl = Duration::from_secs(1);
        let guard = Guard::new(&config);
        assert!(!guard.known_unknown(9));
        guard.remember_unknown(9);
        assert!(guard.known_unknown(9));
        std::thread::sleep(Duration::from_millis(1_100));
        assert!(!guard.known_unknown(9));
    }
}
