//! The sandbox's notion of "now".
//!
//! Every time-dependent rule (token expiry, `updated_at` stamps, the QBO throttle window, the CDC
//! 30-day look-back) reads this clock instead of the system clock, so tests can move time forward
//! (`advance`) and observe expiry or a new throttle window at once instead of sleeping.
//! The clock is wall time plus an offset. `advance` only moves it forward; `set_now` (for tests
//! that need an exact instant, e.g. to reproduce a signed webhook byte for byte) may move it back.
//! `pause` stops it (every write then gets the same timestamp, so a test can script ties exactly;
//! `advance` still moves a paused clock) and `resume` lets it flow again from where it stood. A
//! paused clock also stops the throttle windows, so pause only with the Fyle rate limit off.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, TimeDelta, Utc};

/// Wall-clock time shifted by an adjustable offset; cheap to clone (shared offset).
#[derive(Debug, Clone)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
    /// Microseconds since the epoch while paused; `NOT_PAUSED` otherwise.
    paused_us: Arc<AtomicI64>,
}

const NOT_PAUSED: i64 = i64::MIN;

impl Default for Clock {
    fn default() -> Self {
        Self {
            offset_ms: Arc::default(),
            paused_us: Arc::new(AtomicI64::new(NOT_PAUSED)),
        }
    }
}

impl Clock {
    /// A clock that reads the system time.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current simulated time.
    pub fn now(&self) -> DateTime<Utc> {
        match self.paused_us.load(Ordering::Relaxed) {
            NOT_PAUSED => {
                Utc::now() + TimeDelta::milliseconds(self.offset_ms.load(Ordering::Relaxed))
            }
            us => DateTime::from_timestamp_micros(us).unwrap_or_default(),
        }
    }

    /// Moves simulated time forward (affects every server sharing this clock).
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 2);
        if self.paused_us.load(Ordering::Relaxed) != NOT_PAUSED {
            self.paused_us.fetch_add(ms * 1000, Ordering::Relaxed);
        }
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// Makes `now()` read `at` (time keeps flowing from there unless paused).
    pub fn set_now(&self, at: DateTime<Utc>) {
        if self.paused_us.load(Ordering::Relaxed) != NOT_PAUSED {
            self.paused_us
                .store(at.timestamp_micros(), Ordering::Relaxed);
        }
        let offset = (at - Utc::now()).num_milliseconds();
        self.offset_ms.store(offset, Ordering::Relaxed);
    }

    /// Stops time at the current instant until [`Clock::resume`].
    pub fn pause(&self) {
        let now = self.now().timestamp_micros();
        self.paused_us.store(now, Ordering::Relaxed);
    }

    /// Lets time flow again from the instant it was paused at.
    pub fn resume(&self) {
        let paused = self.paused_us.swap(NOT_PAUSED, Ordering::Relaxed);
        if paused != NOT_PAUSED {
            // Round the offset up, so time never reads earlier than the paused instant.
            let us = paused - Utc::now().timestamp_micros();
            self.offset_ms
                .store((us + 999).div_euclid(1000), Ordering::Relaxed);
        }
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

    #[test]
    fn a_paused_clock_stands_still_but_can_be_advanced() {
        let clock = Clock::new();
        clock.pause();
        let t = clock.now();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(clock.now(), t);
        clock.advance(Duration::from_secs(2));
        assert_eq!(clock.now() - t, TimeDelta::seconds(2));
        clock.resume();
        assert!(clock.now() >= t + TimeDelta::seconds(2));
    }
}
