//! Request throttling: a sliding window of admitted requests plus a concurrency cap, per key.
//!
//! QBO enforces 500 requests per minute and 10 concurrent requests per realm (reference §3.7); the
//! gate keys this throttle by the realm in the URL and answers 429 with the 3001 fault. The same
//! type, keyed by client IP with a 1-second window and no concurrency cap, is the Fyle data-API
//! rate limit (10 requests/second per IP, on by default; `fyle_rate_limit_per_second: None` turns
//! it off for benchmarks).
//! Rejected requests do not count towards the window. The window reads the sandbox clock, so a
//! test can `advance` it by the window length instead of waiting.
//! Failure policy: a poisoned lock is recovered (the counters are plain numbers).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{clock::Clock, faults::lock};

/// Limits of one throttle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ThrottleConfig {
    /// Requests admitted per window and key.
    pub per_window: u32,
    /// Window length in milliseconds.
    pub window_ms: u64,
    /// Requests in flight per key.
    pub concurrent: u32,
}

impl ThrottleConfig {
    /// Intuit's limits: 500/minute and 10 concurrent per realm.
    pub fn qbo() -> Self {
        Self {
            per_window: 500,
            window_ms: 60_000,
            concurrent: 10,
        }
    }

    /// Fyle's documented 10 requests/second per IP.
    pub fn fyle_per_second(n: u32) -> Self {
        Self {
            per_window: n,
            window_ms: 1_000,
            concurrent: u32::MAX,
        }
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Too many requests in flight.
    Concurrent,
    /// Too many requests in the window.
    Rate,
}

/// Load of one key.
#[derive(Debug, Default, Clone)]
pub struct Load {
    recent: VecDeque<i64>,
    inflight: u32,
}

/// Admits a request at `now_ms` or says which limit it hits. Pure.
pub fn admit(load: &mut Load, now_ms: i64, cfg: &ThrottleConfig) -> Result<(), Limit> {
    let horizon = now_ms - i64::try_from(cfg.window_ms).unwrap_or(i64::MAX);
    while load.recent.front().is_some_and(|t| *t <= horizon) {
        load.recent.pop_front();
    }
    if load.inflight >= cfg.concurrent {
        return Err(Limit::Concurrent);
    }
    if load.recent.len() >= cfg.per_window as usize {
        return Err(Limit::Rate);
    }
    load.recent.push_back(now_ms);
    load.inflight += 1;
    Ok(())
}

#[derive(Debug)]
struct Inner {
    config: ThrottleConfig,
    loads: HashMap<String, Load>,
}

/// A keyed throttle.
#[derive(Debug)]
pub struct Throttle {
    inner: Mutex<Inner>,
    clock: Clock,
}

/// Held while a request is in flight; releases its concurrency slot on drop.
#[derive(Debug)]
pub struct Permit {
    throttle: Arc<Throttle>,
    key: String,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut inner = lock(&self.throttle.inner);
        if let Some(load) = inner.loads.get_mut(&self.key) {
            load.inflight = load.inflight.saturating_sub(1);
        }
    }
}

impl Throttle {
    /// A throttle with limits `config` on `clock`.
    pub fn new(config: ThrottleConfig, clock: Clock) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                config,
                loads: HashMap::new(),
            }),
            clock,
        })
    }

    /// Current limits.
    pub fn config(&self) -> ThrottleConfig {
        lock(&self.inner).config
    }

    /// Replaces the limits and forgets past load.
    pub fn set_config(&self, config: ThrottleConfig) {
        let mut inner = lock(&self.inner);
        inner.config = config;
        inner.loads.retain(|_, l| l.inflight > 0);
        for l in inner.loads.values_mut() {
            l.recent.clear();
        }
    }

    /// Admits a request for `key`.
    pub fn acquire(self: &Arc<Self>, key: &str) -> Result<Permit, Limit> {
        let now = self.clock.now().timestamp_millis();
        let mut inner = lock(&self.inner);
        let cfg = inner.config;
        admit(inner.loads.entry(key.to_owned()).or_default(), now, &cfg)?;
        Ok(Permit {
            throttle: Arc::clone(self),
            key: key.to_owned(),
        })
    }

    /// The window length.
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.config().window_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_501st_request_in_a_minute_is_refused_and_the_next_minute_admits() {
        let cfg = ThrottleConfig::qbo();
        let mut load = Load::default();
        for i in 0..500 {
            admit(&mut load, i, &cfg).expect("within the limit");
            load.inflight -= 1;
        }
        assert_eq!(admit(&mut load, 59_000, &cfg), Err(Limit::Rate));
        assert_eq!(
            admit(&mut load, 60_000, &cfg),
            Ok(()),
            "request at t=0 left the window"
        );
    }

    #[test]
    fn the_11th_concurrent_request_is_refused() {
        let cfg = ThrottleConfig::qbo();
        let mut load = Load::default();
        for _ in 0..10 {
            admit(&mut load, 0, &cfg).expect("within the limit");
        }
        assert_eq!(admit(&mut load, 0, &cfg), Err(Limit::Concurrent));
    }

    #[test]
    fn permits_release_concurrency_on_drop() {
        let t = Throttle::new(
            ThrottleConfig {
                per_window: 100,
                window_ms: 1000,
                concurrent: 1,
            },
            Clock::new(),
        );
        let p = t.acquire("r").expect("first");
        assert_eq!(t.acquire("r").err(), Some(Limit::Concurrent));
        assert!(t.acquire("other").is_ok(), "keys are independent");
        drop(p);
        assert!(t.acquire("r").is_ok());
    }
}
