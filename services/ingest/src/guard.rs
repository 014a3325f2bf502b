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
//!   projection row and opened credentials are kept in memory, so a delivery costs no lookups.
//!   An entry is never used past the TTL. Every quarter of the TTL one background pass
//!   ([`AuthCache::refresh`]) reloads, together — one projection read and one credentials
//!   read per thousand workspaces — every entry past half the TTL whose workspace delivered
//!   an *authenticated* webhook within [`KEEP_WARM_TTLS`] TTLs; so an active workspace never
//!   waits for a load, even across a short lull, while a reload per workspace used to cost
//!   three statements each, hundreds a second with 100 workspaces. Requests that fail to
//!   authenticate never keep an entry warm, so strangers cannot make the pass reload
//!   workspaces for them. A workspace quiet for longer is left to expire and is loaded on its
//!   next request: requests that find it missing together wait for one load and take its
//!   answer — the entry, or the same refusal — unless a change was made here meanwhile. A
//!   change made through this replica (`SetAuthMode`, `RotateWebhookSecret`) drops the entry
//!   at once, and a load that began before the change can neither store what it read nor hand
//!   it to the requests waiting for it; other replicas see it within the TTL — harmless for a
//!   rotation (the old secret stays valid for the overlap), and a mode change takes effect
//!   everywhere within the TTL. An entry holding a rotated-out secret is not used past that
//!   secret's overlap (`Credentials::reload_by`): the old secret is refused on time. A failed
//!   pass (database down) keeps the entries until their TTL and is tried again at the next
//!   pass; a workspace a pass finds gone is forgotten.
//!
//! The per-workspace token bucket lives in [`crate::http`] and is charged only after a
//! delivery authenticated, so strangers cannot spend a workspace's budget.

use std::{
    collections::HashMap,
    future::Future,
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

/// What a workspace accepts: its projection row and opened credentials, shared by every
/// request that reads them from the cache.
pub type WorkspaceAuth = Arc<(ProjectedWorkspace, Credentials)>;

/// For how many TTLs after its last authenticated delivery a workspace's entry is kept fresh
/// by [`AuthCache::refresh`] (a short lull between bursts); past it, the entry expires. A
/// sporadic workspace costs at most a few reloads per delivery, all batched with the others'.
pub const KEEP_WARM_TTLS: u32 = 5;

/// What the cache has for a workspace.
#[derive(Debug)]
enum Cached {
    /// Young enough to use as is.
    Fresh(WorkspaceAuth),
    /// Nothing usable: load it now, and store it with the ticket.
    Missing(LoadTicket),
}

/// Permission to store what a load read. A load that began before a [`AuthCache::forget`]
/// may have read the old credentials, so its answer is dropped.
#[derive(Debug)]
struct LoadTicket {
    workspace_id: i64,
    epoch: u64,
    /// When the load began: the entry's age counts from here, since what it reads is as old.
    began: Instant,
}

/// A request's turn to load a workspace's missing entry ([`AuthCache::load_turn`]).
#[derive(Debug)]
struct LoadTurn {
    last_load: tokio::sync::OwnedMutexGuard<Option<SharedLoad>>,
    waited_from: Instant,
}

/// How the last request-path load of a workspace ended, for the requests that waited for it.
#[derive(Debug)]
struct SharedLoad {
    ended: Instant,
    /// The cache's epoch when the load began: after a `forget` its answer is nobody's.
    epoch: u64,
    outcome: Result<WorkspaceAuth, Rejection>,
}

impl LoadTurn {
    /// How the load this request waited for ended, if one ended while it waited: its waiters
    /// take that answer (the entry, or the same refusal) instead of loading again one by one.
    fn outcome_waited_for(&self, epoch: u64) -> Option<Result<WorkspaceAuth, Rejection>> {
        self.last_load
            .as_ref()
            .filter(|load| load.ended >= self.waited_from && load.epoch == epoch)
            .map(|load| load.outcome.clone())
    }

    /// Records how this request's load ended, for the requests waiting for the turn.
    fn record(&mut self, epoch: u64, outcome: &Result<WorkspaceAuth, Rejection>) {
        *self.last_load = Some(SharedLoad {
            ended: Instant::now(),
            epoch,
            outcome: outcome.clone(),
        });
    }
}

struct Entry {
    loaded_at: Instant,
    /// The workspace's last authenticated delivery ([`AuthCache::touch`]), if any since the
    /// entry was first loaded: [`AuthCache::refresh`] keeps the entry fresh until
    /// [`KEEP_WARM_TTLS`] TTLs after it.
    used_at: Option<Instant>,
    auth: WorkspaceAuth,
}

#[derive(Default)]
struct Entries {
    by_workspace: HashMap<i64, Entry>,
    /// Bumped by every `forget`, so loads that began before it cannot store their answer.
    epoch: u64,
}

/// Recently loaded workspace facts and credentials (see the module doc). An entry is used for
/// `ttl` after its load; [`Self::refresh`] reloads the entries of active workspaces together
/// before that, so their deliveries never wait for a load.
pub struct AuthCache {
    entries: Mutex<Entries>,
    ttl: Duration,
    /// One turn per workspace whose entry is being loaded on the request path.
    load_turns: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<Option<SharedLoad>>>>>,
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
            load_turns: Mutex::default(),
        }
    }

    /// How often [`Self::refresh`] should run: a quarter of the TTL, so an entry due at half
    /// the TTL is reloaded well before it expires. `None` when nothing is cached.
    pub fn refresh_interval(&self) -> Option<Duration> {
        (!self.ttl.is_zero()).then(|| self.ttl / 4)
    }

    /// What a workspace accepts, from the cache or, when it has nothing usable, from `load` —
    /// once for all the requests that find it missing together, which take that load's answer,
    /// refusals included.
    pub async fn get_or_load<L, F>(
        self: &Arc<Self>,
        workspace_id: i64,
        load: L,
    ) -> Result<WorkspaceAuth, Rejection>
    where
        L: FnOnce() -> F,
        F: Future<Output = Result<WorkspaceAuth, Rejection>>,
    {
        if let Cached::Fresh(auth) = self.get(workspace_id) {
            return Ok(auth);
        }
        let mut turn = self.load_turn(workspace_id).await;
        let ticket = match self.get(workspace_id) {
            Cached::Fresh(auth) => return Ok(auth),
            Cached::Missing(ticket) => ticket,
        };
        if let Some(waited_for) = turn
            .as_ref()
            .and_then(|t| t.outcome_waited_for(ticket.epoch))
        {
            return waited_for;
        }
        let epoch = ticket.epoch;
        let loaded = load().await;
        if let Some(turn) = &mut turn {
            turn.record(epoch, &loaded);
        }
        if let Ok(auth) = &loaded {
            self.put(ticket, Arc::clone(auth));
        }
        loaded
    }

    /// Reloads, with one call of `load_many`, every entry past half its TTL whose workspace
    /// delivered within [`KEEP_WARM_TTLS`] TTLs. `load_many` answers for each id it is given; an
    /// answer that the workspace is unknown forgets it, any other failure (or no answer)
    /// leaves the entry to the next pass and, at worst, to its TTL.
    pub async fn refresh<L, F>(&self, load_many: L)
    where
        L: FnOnce(Vec<i64>) -> F,
        F: Future<Output = HashMap<i64, Result<WorkspaceAuth, Rejection>>>,
    {
        let tickets = self.due_for_refresh();
        if tickets.is_empty() {
            return;
        }
        let mut loaded = load_many(tickets.iter().map(|t| t.workspace_id).collect()).await;
        let mut gone = Vec::new();
        for ticket in tickets {
            match loaded.remove(&ticket.workspace_id) {
                Some(Ok(auth)) => self.put(ticket, auth),
                Some(Err(Rejection::Unauthenticated)) => gone.push(ticket.workspace_id),
                Some(Err(_)) | None => {}
            }
        }
        // After every answer is stored: a forget makes the tickets taken before it useless.
        for workspace_id in gone {
            self.forget(workspace_id);
        }
    }

    /// Tickets for the entries [`Self::refresh`] reloads (see there).
    fn due_for_refresh(&self) -> Vec<LoadTicket> {
        let Ok(entries) = self.entries.lock() else {
            return Vec::new();
        };
        let began = Instant::now();
        let keep_warm = self.ttl * KEEP_WARM_TTLS;
        entries
            .by_workspace
            .iter()
            .filter(|(_, entry)| {
                entry.loaded_at.elapsed() >= self.ttl / 2
                    && entry.used_at.is_some_and(|at| at.elapsed() < keep_warm)
            })
            .map(|(&workspace_id, _)| LoadTicket {
                workspace_id,
                epoch: entries.epoch,
                began,
            })
            .collect()
    }

    /// Waits for this workspace's turn to load a missing entry: requests that find it missing
    /// together load it once — the first loads and records how it ended, the others take that
    /// ([`LoadTurn::outcome_waited_for`]). With more workspaces loading than it tracks, no turn
    /// is taken.
    async fn load_turn(&self, workspace_id: i64) -> Option<LoadTurn> {
        let waited_from = Instant::now();
        let turn = {
            let mut turns = self.load_turns.lock().ok()?;
            if turns.len() >= MAX_UNKNOWN {
                turns.retain(|_, turn| Arc::strong_count(turn) > 1);
                if turns.len() >= MAX_UNKNOWN {
                    return None;
                }
            }
            Arc::clone(turns.entry(workspace_id).or_default())
        };
        Some(LoadTurn {
            last_load: turn.lock_owned().await,
            waited_from,
        })
    }

    /// The entry, if it is usable, else the ticket to store a load with.
    fn get(&self, workspace_id: i64) -> Cached {
        let now = Instant::now();
        let Ok(mut entries) = self.entries.lock() else {
            return Cached::Missing(LoadTicket {
                workspace_id,
                epoch: u64::MAX,
                began: now,
            });
        };
        let ticket = LoadTicket {
            workspace_id,
            epoch: entries.epoch,
            began: now,
        };
        let Some(entry) = entries.by_workspace.get_mut(&workspace_id) else {
            return Cached::Missing(ticket);
        };
        let secret_expired = entry
            .auth
            .1
            .reload_by
            .is_some_and(|by| chrono::Utc::now() >= by);
        if now.saturating_duration_since(entry.loaded_at) >= self.ttl || secret_expired {
            Cached::Missing(ticket)
        } else {
            Cached::Fresh(Arc::clone(&entry.auth))
        }
    }

    /// Stores what a load read, unless the workspace was forgotten since the load began or a
    /// load that began later already stored its answer. Its age counts from the load's start.
    fn put(&self, ticket: LoadTicket, auth: WorkspaceAuth) {
        if self.ttl.is_zero() {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.epoch != ticket.epoch {
            // Read before a `forget`: dropped; a later request loads again.
            return;
        }
        let used_at = match entries.by_workspace.get(&ticket.workspace_id) {
            Some(newer) if newer.loaded_at > ticket.began => return,
            Some(older) => older.used_at,
            None => None,
        };
        if entries.by_workspace.len() >= MAX_UNKNOWN {
            let ttl = self.ttl;
            entries
                .by_workspace
                .retain(|_, e| e.loaded_at.elapsed() < ttl);
        }
        entries.by_workspace.insert(
            ticket.workspace_id,
            Entry {
                loaded_at: ticket.began,
                used_at,
                auth,
            },
        );
    }

    /// Records an authenticated delivery of the workspace: its entry is kept fresh
    /// ([`KEEP_WARM_TTLS`]). Only after authentication, so strangers cannot keep it warm.
    pub fn touch(&self, workspace_id: i64) {
        if let Ok(mut entries) = self.entries.lock()
            && let Some(entry) = entries.by_workspace.get_mut(&workspace_id)
        {
            entry.used_at = Some(Instant::now());
        }
    }

    /// Forgets a workspace whose credentials just changed here; loads already running cannot
    /// store what they read before the change.
    pub fn forget(&self, workspace_id: i64) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.by_workspace.remove(&workspace_id);
            entries.epoch += 1;
        }
    }

    pub fn prune(&self) {
        let ttl = self.ttl;
        if let Ok(mut entries) = self.entries.lock() {
            entries
                .by_workspace
                .retain(|_, e| e.loaded_at.elapsed() < ttl);
        }
        if let Ok(mut turns) = self.load_turns.lock() {
            turns.retain(|_, turn| Arc::strong_count(turn) > 1);
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

    fn workspace(org: &str) -> ProjectedWorkspace {
        ProjectedWorkspace {
            workspace_id: 7,
            fyle_org_id: org.into(),
            qbo_realm_id: None,
            fyle_webhook_sync_enabled: true,
            fyle_webhook_by_type: serde_json::Value::Null,
            qbo_webhook_sync_enabled: true,
            qbo_webhook_by_entity: serde_json::Value::Null,
            deleted: false,
            version: 1,
            snapshot: Vec::new(),
        }
    }

    fn credentials(reload_by: Option<chrono::DateTime<chrono::Utc>>) -> Credentials {
        Credentials {
            mode: crate::auth::AuthMode::UrlToken,
            secrets: vec!["new".into(), "rotated-out".into()],
            reload_by,
        }
    }

    fn missing(cache: &AuthCache) -> LoadTicket {
        match cache.get(7) {
            Cached::Missing(ticket) => ticket,
            other => panic!("expected nothing cached, got {other:?}"),
        }
    }

    fn org_of(cached: &Cached) -> Option<&str> {
        match cached {
            Cached::Fresh(auth) => Some(auth.0.fyle_org_id.as_str()),
            Cached::Missing(_) => None,
        }
    }

    #[test]
    fn a_cached_entry_is_not_used_past_the_overlap_of_a_secret_it_holds() {
        let cache = AuthCache::new(Duration::from_secs(60));
        let later = chrono::Utc::now() + chrono::Duration::seconds(30);
        cache.put(
            missing(&cache),
            Arc::new((workspace("orX"), credentials(Some(later)))),
        );
        assert!(
            matches!(cache.get(7), Cached::Fresh(_)),
            "within the overlap and the TTL"
        );
        let past = chrono::Utc::now() - chrono::Duration::milliseconds(1);
        let reload = LoadTicket {
            workspace_id: 7,
            epoch: cache.entries.lock().expect("lock").epoch,
            began: Instant::now(),
        };
        cache.put(
            reload,
            Arc::new((workspace("orX"), credentials(Some(past)))),
        );
        assert!(
            matches!(cache.get(7), Cached::Missing(_)),
            "the rotated-out secret's overlap ended: load again, whatever the TTL"
        );
    }

    fn auth(org: &str) -> WorkspaceAuth {
        Arc::new((workspace(org), credentials(None)))
    }

    /// A cache with an entry for each of `ids` (org `orA`), loaded `age` ago.
    fn cache_loaded(ttl: Duration, ids: &[i64], age: Duration) -> AuthCache {
        let cache = AuthCache::new(ttl);
        for &id in ids {
            let Cached::Missing(mut ticket) = cache.get(id) else {
                panic!("empty cache");
            };
            ticket.began = Instant::now().checked_sub(age).expect("uptime");
            cache.put(ticket, auth("orA"));
            cache.touch(id);
        }
        cache
    }

    /// [`cache_loaded`] with a 2 s TTL and entries past half of it: due for a refresh.
    fn due_cache(ids: &[i64]) -> AuthCache {
        cache_loaded(Duration::from_secs(2), ids, Duration::from_millis(1_100))
    }

    /// Runs a refresh whose load answers `answer(id)` for each id; the ids it was asked for.
    async fn refresh_with(
        cache: &AuthCache,
        answer: impl Fn(i64) -> Result<WorkspaceAuth, Rejection>,
    ) -> Vec<Vec<i64>> {
        let calls = Mutex::new(Vec::new());
        cache
            .refresh(|mut ids| {
                ids.sort_unstable();
                let answers = ids.iter().map(|&id| (id, answer(id))).collect();
                calls.lock().expect("lock").push(ids);
                async move { answers }
            })
            .await;
        calls.into_inner().expect("lock")
    }

    #[tokio::test]
    async fn the_refresh_reloads_every_active_workspace_past_half_its_ttl_with_one_load() {
        let cache = due_cache(&[1, 2, 3]);
        let Cached::Missing(ticket) = cache.get(4) else {
            panic!("not cached yet");
        };
        cache.put(ticket, auth("orA"));
        cache.touch(4);
        for id in 1..=4 {
            assert_eq!(
                org_of(&cache.get(id)),
                Some("orA"),
                "usable before the refresh"
            );
        }
        let calls = refresh_with(&cache, |_| Ok(auth("orB"))).await;
        assert_eq!(
            calls,
            vec![vec![1, 2, 3]],
            "one load, of the entries past half the TTL"
        );
        for id in 1..=3 {
            assert_eq!(org_of(&cache.get(id)), Some("orB"), "reloaded: {id}");
        }
        assert_eq!(org_of(&cache.get(4)), Some("orA"), "young: left as it is");
        assert!(
            refresh_with(&cache, |_| Ok(auth("orC"))).await.is_empty(),
            "a reload restarts the entry's age"
        );
    }

    #[tokio::test]
    async fn a_workspace_quiet_for_longer_than_keep_warm_is_left_to_expire() {
        let cache = due_cache(&[1, 2]);
        let quiet = Instant::now()
            .checked_sub(Duration::from_secs(2) * KEEP_WARM_TTLS)
            .expect("uptime");
        cache
            .entries
            .lock()
            .expect("lock")
            .by_workspace
            .get_mut(&2)
            .expect("cached")
            .used_at = Some(quiet);
        let calls = refresh_with(&cache, |_| Ok(auth("orB"))).await;
        assert_eq!(calls, vec![vec![1]]);
    }

    #[tokio::test]
    async fn a_workspace_only_strangers_posted_to_is_not_kept_loaded() {
        let cache = due_cache(&[1]);
        // Loaded by a request that then failed to authenticate: never touched.
        let Cached::Missing(mut ticket) = cache.get(2) else {
            panic!("not cached yet");
        };
        ticket.began = Instant::now()
            .checked_sub(Duration::from_millis(1_100))
            .expect("uptime");
        cache.put(ticket, auth("orA"));
        let calls = refresh_with(&cache, |_| Ok(auth("orB"))).await;
        assert_eq!(calls, vec![vec![1]]);
    }

    #[tokio::test]
    async fn a_request_waiting_for_a_load_that_began_before_a_change_loads_again() {
        let cache = Arc::new(AuthCache::new(Duration::from_secs(60)));
        let first = {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move {
                cache
                    .get_or_load(7, || async {
                        tokio::time::sleep(Duration::from_millis(150)).await;
                        Ok(auth("orOld"))
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        // SetAuthMode lands while the first request loads; a second request then waits for it.
        cache.forget(7);
        let second = {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { cache.get_or_load(7, || async { Ok(auth("orNew")) }).await })
        };
        let first = first.await.expect("first").expect("loaded");
        let second = second.await.expect("second").expect("loaded");
        assert_eq!(first.0.fyle_org_id, "orOld", "its own answer");
        assert_eq!(
            second.0.fyle_org_id, "orNew",
            "not the answer read before the change"
        );
    }

    #[tokio::test]
    async fn a_refresh_forgets_a_workspace_found_gone_and_keeps_the_others_it_reloaded() {
        let cache = due_cache(&[1, 2, 3]);
        refresh_with(&cache, |id| {
            if id == 2 {
                Err(Rejection::Unauthenticated)
            } else {
                Ok(auth("orB"))
            }
        })
        .await;
        assert_eq!(org_of(&cache.get(1)), Some("orB"));
        assert!(
            matches!(cache.get(2), Cached::Missing(_)),
            "gone: refused from now on"
        );
        assert_eq!(org_of(&cache.get(3)), Some("orB"));
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_the_entries_and_the_next_pass_tries_again() {
        let cache = due_cache(&[1, 2]);
        let calls = refresh_with(&cache, |_| Err(Rejection::Unavailable)).await;
        assert_eq!(calls, vec![vec![1, 2]]);
        assert_eq!(org_of(&cache.get(1)), Some("orA"), "used until its TTL");
        let again = refresh_with(&cache, |_| Ok(auth("orB"))).await;
        assert_eq!(again, vec![vec![1, 2]]);
        assert_eq!(org_of(&cache.get(2)), Some("orB"));
    }

    #[tokio::test]
    async fn a_refresh_that_read_before_a_change_made_here_cannot_store_what_it_read() {
        let cache = due_cache(&[7]);
        cache
            .refresh(|ids| {
                // SetAuthMode lands while the refresh reads.
                cache.forget(7);
                let answers = ids.into_iter().map(|id| (id, Ok(auth("orOld")))).collect();
                async move { answers }
            })
            .await;
        assert!(
            matches!(cache.get(7), Cached::Missing(_)),
            "loaded again, after the change"
        );
    }

    #[test]
    fn an_entry_is_never_used_past_its_ttl() {
        let cache = cache_loaded(Duration::from_secs(2), &[7], Duration::from_millis(2_000));
        assert!(matches!(cache.get(7), Cached::Missing(_)));
    }

    /// Eight requests that find workspace 7 missing together, each through
    /// [`AuthCache::get_or_load`] with a load that takes 20 ms and answers `outcome`; how many
    /// loads ran, and each request's answer.
    async fn together(
        outcome: Result<WorkspaceAuth, Rejection>,
    ) -> (usize, Vec<Result<WorkspaceAuth, Rejection>>) {
        let cache = Arc::new(AuthCache::new(Duration::from_secs(60)));
        let loads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let requests = (0..8).map(|_| {
            let (cache, loads, outcome) = (Arc::clone(&cache), Arc::clone(&loads), outcome.clone());
            tokio::spawn(async move {
                let load = move || {
                    let (loads, outcome) = (Arc::clone(&loads), outcome.clone());
                    async move {
                        loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        outcome
                    }
                };
                cache.get_or_load(7, load).await
            })
        });
        let answers = futures::future::join_all(requests)
            .await
            .into_iter()
            .map(|answer| answer.expect("request"))
            .collect();
        cache.prune();
        assert!(
            cache.load_turns.lock().expect("lock").is_empty(),
            "turns nobody holds are pruned"
        );
        (loads.load(std::sync::atomic::Ordering::SeqCst), answers)
    }

    #[tokio::test]
    async fn requests_that_find_a_workspace_missing_together_load_it_once() {
        let (loads, answers) = together(Ok(Arc::new((workspace("orA"), credentials(None))))).await;
        assert_eq!(loads, 1);
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    }

    #[tokio::test]
    async fn requests_waiting_for_a_load_that_failed_take_its_refusal_instead_of_loading_in_turn() {
        let (loads, answers) = together(Err(Rejection::Unavailable)).await;
        assert_eq!(loads, 1, "one load, not one per waiting request");
        assert!(
            answers
                .iter()
                .all(|a| matches!(a, Err(Rejection::Unavailable))),
            "{answers:?}"
        );
    }

    #[test]
    fn a_load_that_began_before_a_newer_stored_one_does_not_replace_it() {
        let cache = AuthCache::new(Duration::from_secs(60));
        let older = missing(&cache);
        std::thread::sleep(Duration::from_millis(2));
        let newer = missing(&cache);
        cache.put(newer, Arc::new((workspace("orNew"), credentials(None))));
        cache.put(older, Arc::new((workspace("orOld"), credentials(None))));
        assert_eq!(org_of(&cache.get(7)), Some("orNew"));
    }

    #[test]
    fn a_load_that_began_before_a_forget_cannot_store_what_it_read() {
        let cache = AuthCache::new(Duration::from_secs(60));
        let before_the_change = missing(&cache);
        cache.forget(7);
        cache.put(
            before_the_change,
            Arc::new((workspace("orOld"), credentials(None))),
        );
        let after = missing(&cache);
        cache.put(after, Arc::new((workspace("orNew"), credentials(None))));
        assert_eq!(org_of(&cache.get(7)), Some("orNew"));
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
