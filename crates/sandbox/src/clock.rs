//! The sandbox's notion of "now".
//!
//! Every time-dependent rule (token expiry, `updated_at` stamps, the QBO throttle window, the CDC
//! 30-day look-back) reads this clock instead of the system clock, so tests can move time forward
//! (`advance`) and observe expiry or a new throttle window at once instead of sleeping.
//! The clock is wall time plus an offset. `advance` only moves it forward; `set_now` (for tests
//! that need an exact instant, e.g. to reproduce a signed webhook byte for byte) may move it back.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, TimeDelta, Utc};

/// Wall-clock time shifted by an adjustable offset; cheap to clone (shared offset).
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// A clock that reads the system time.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current simulated time.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + TimeDelta::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Moves simulated time forward (affects every server sharing this clock).
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 2);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// Makes `now()` read `at` (time keeps flowing from there).
    pub fn set_now(&self, at: DateTime<Utc>) {
        let offset = (at - Utc::now()).num_milliseconds();
        self.offset_ms.store(offset, Ordering::Relaxed);
    }

    /// How far simulated time is ahead of wall time.
    pub fn offset(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.offset_ms.load(Ordering::Relaxed)).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_now_forward_for_every_clone() {
        let clock = Clock::new();
        let other = clock.clone();
        let before = clock.now();
        other.advance(Duration::from_secs(3600));
        let after = clock.now();
        assert!(after - before >= TimeDelta::seconds(3600));
        assert_eq!(clock.offset(), Duration::from_secs(3600));
    }
}
