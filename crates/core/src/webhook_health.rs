//! Webhook health: whether a workspace's webhooks can be trusted, decided from what the
//! periodic reconcile finds. A pure state machine, so every sync service (fyle-sync,
//! qbo-sync) applies the same rule and tests reach it without a database.
//!
//! A **window** is one reconcile round of a workspace: every resource in webhook mode is
//! compared with the source, and each change the round had to apply — because no webhook did —
//! is a *missed webhook*. [`step`] takes the current [`HealthState`], the window's missed count
//! and the [`HealthPolicy`], and returns the next state:
//!
//! - **HEALTHY** stays HEALTHY while a window misses at most `degrade_above` webhooks; a window
//!   that misses more turns it **DEGRADED** (the caller then polls at its shorter interval and
//!   says so with a metric and an event).
//! - **DEGRADED** returns to HEALTHY after `recover_after` consecutive *clean* windows (no
//!   missed webhook at all — stricter than the threshold, so a workspace hovering around it
//!   does not flap); any missed webhook restarts the count.
//!
//! Consecutive clean windows are counted in both states, so a status page can show them.
//!
//! **The schedule** follows the state: a workspace is reconciled every [`Schedule::interval`]
//! while HEALTHY and every (shorter) [`Schedule::degraded_interval`] while DEGRADED, when polling
//! takes over ([`poll_interval`]); its next round is due that long after its last one, or after
//! it connected when it has had none ([`next_round_at`]).

use std::{fmt, time::Duration};

use chrono::{DateTime, Utc};

use serde::{Deserialize, Serialize};

/// A workspace's webhook health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Health {
    /// Webhooks arrive; the reconcile runs at its normal interval.
    #[default]
    Healthy,
    /// Webhooks are being missed; polling takes over at a shorter interval.
    Degraded,
}

impl Health {
    /// The stored and displayed name: `HEALTHY` or `DEGRADED`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "HEALTHY",
            Health::Degraded => "DEGRADED",
        }
    }

    /// Parses a stored name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "HEALTHY" => Some(Health::Healthy),
            "DEGRADED" => Some(Health::Degraded),
            _ => None,
        }
    }

    /// Every state, for per-state metrics.
    pub const ALL: [Health; 2] = [Health::Healthy, Health::Degraded];
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is remembered between windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HealthState {
    pub health: Health,
    /// Consecutive windows without a missed webhook, ending with the last one.
    pub clean_windows: u32,
}

/// The thresholds (configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// A HEALTHY workspace turns DEGRADED when one window misses more than this many webhooks
    /// (0: any missed webhook degrades it).
    pub degrade_above: u64,
    /// A DEGRADED workspace turns HEALTHY after this many consecutive clean windows (at
    /// least 1; 0 is treated as 1).
    pub recover_after: u32,
}

/// The outcome of one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub next: HealthState,
    /// Whether `next.health` differs from the state before the window.
    pub changed: bool,
}

/// The state after a window in which `missed` webhooks were missed (see the module doc).
pub fn step(current: HealthState, missed: u64, policy: HealthPolicy) -> Step {
    let clean_windows = if missed == 0 {
        current.clean_windows.saturating_add(1)
    } else {
        0
    };
    let health = match current.health {
        Health::Healthy if missed > policy.degrade_above => Health::Degraded,
        Health::Healthy => Health::Healthy,
        Health::Degraded if clean_windows >= policy.recover_after.max(1) => Health::Healthy,
        Health::Degraded => Health::Degraded,
    };
    Step {
        next: HealthState {
            health,
            clean_windows,
        },
        changed: health != current.health,
    }
}

/// How often rounds run, by health (configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// A HEALTHY workspace's interval between rounds.
    pub interval: Duration,
    /// A DEGRADED workspace's: polling takes over at this (shorter) interval.
    pub degraded_interval: Duration,
}

/// How often a workspace in `health` is reconciled.
pub fn poll_interval(health: Health, schedule: &Schedule) -> Duration {
    match health {
        Health::Healthy => schedule.interval,
        Health::Degraded => schedule.degraded_interval,
    }
}

/// When a workspace's next round is due: an interval (by its health) after its last round, or
/// after `connected_at` when it has had none. An interval too long to add is never due.
pub fn next_round_at(
    last_round: Option<DateTime<Utc>>,
    connected_at: DateTime<Utc>,
    health: Health,
    schedule: &Schedule,
) -> DateTime<Utc> {
    let interval = chrono::Duration::from_std(poll_interval(health, schedule))
        .unwrap_or(chrono::Duration::MAX);
    let anchor = last_round.unwrap_or(connected_at);
    anchor
        .checked_add_signed(interval)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const POLICY: HealthPolicy = HealthPolicy {
        degrade_above: 2,
        recover_after: 3,
    };

    fn healthy() -> HealthState {
        HealthState::default()
    }

    fn run(start: HealthState, windows: &[u64], policy: HealthPolicy) -> Vec<Step> {
        let mut state = start;
        windows
            .iter()
            .map(|&missed| {
                let s = step(state, missed, policy);
                state = s.next;
                s
            })
            .collect()
    }

    #[test]
    fn a_healthy_workspace_tolerates_missed_webhooks_up_to_the_threshold() {
        for missed in [0, 1, 2] {
            let s = step(healthy(), missed, POLICY);
            assert_eq!(s.next.health, Health::Healthy, "{missed} missed");
            assert!(!s.changed);
        }
        assert_eq!(step(healthy(), 1, POLICY).next.clean_windows, 0);
        assert_eq!(step(healthy(), 0, POLICY).next.clean_windows, 1);
    }

    #[test]
    fn one_window_past_the_threshold_degrades_it() {
        let s = step(healthy(), 3, POLICY);
        assert_eq!(
            s,
            Step {
                next: HealthState {
                    health: Health::Degraded,
                    clean_windows: 0
                },
                changed: true
            }
        );
        // Missed webhooks spread over windows, each under the threshold, do not.
        let steps = run(healthy(), &[2, 2, 2, 2], POLICY);
        assert!(steps.iter().all(|s| s.next.health == Health::Healthy));
    }

    #[test]
    fn a_threshold_of_zero_degrades_on_the_first_missed_webhook() {
        let policy = HealthPolicy {
            degrade_above: 0,
            recover_after: 1,
        };
        assert!(step(healthy(), 1, policy).changed);
        assert!(!step(healthy(), 0, policy).changed);
    }

    #[test]
    fn a_degraded_workspace_recovers_after_consecutive_clean_windows_only() {
        let degraded = HealthState {
            health: Health::Degraded,
            clean_windows: 0,
        };
        let steps = run(degraded, &[0, 0, 1, 0, 0, 0, 0], POLICY);
        let healths: Vec<Health> = steps.iter().map(|s| s.next.health).collect();
        use Health::{Degraded as D, Healthy as H};
        // One missed webhook (even under the threshold) restarts the count.
        assert_eq!(healths, vec![D, D, D, D, D, H, H]);
        let changed: Vec<usize> = (0..steps.len()).filter(|&i| steps[i].changed).collect();
        assert_eq!(changed, vec![5], "the change is reported once");
        assert_eq!(steps[5].next.clean_windows, 3);
    }

    #[test]
    fn recovery_needs_at_least_one_clean_window() {
        let policy = HealthPolicy {
            degrade_above: 0,
            recover_after: 0,
        };
        let degraded = HealthState {
            health: Health::Degraded,
            clean_windows: 0,
        };
        assert_eq!(step(degraded, 1, policy).next.health, Health::Degraded);
        assert_eq!(step(degraded, 0, policy).next.health, Health::Healthy);
    }

    #[test]
    fn it_can_degrade_again_right_after_recovering() {
        let steps = run(healthy(), &[5, 0, 0, 0, 9], POLICY);
        let changes: Vec<(usize, Health)> = steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.changed)
            .map(|(i, s)| (i, s.next.health))
            .collect();
        assert_eq!(
            changes,
            vec![
                (0, Health::Degraded),
                (3, Health::Healthy),
                (4, Health::Degraded)
            ]
        );
    }

    #[test]
    fn names_round_trip() {
        for h in Health::ALL {
            assert_eq!(Health::parse(h.as_str()), Some(h));
            assert_eq!(h.to_string(), h.as_str());
        }
        assert_eq!(Health::parse("healthy"), None);
    }

    #[test]
    fn clean_windows_saturate() {
        let s = step(
            HealthState {
                health: Health::Healthy,
                clean_windows: u32::MAX,
            },
            0,
            POLICY,
        );
        assert_eq!(s.next.clean_windows, u32::MAX);
    }

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 2, h, m, 0)
            .single()
            .unwrap_or_default()
    }

    const SCHEDULE: Schedule = Schedule {
        interval: Duration::from_secs(900),
        degraded_interval: Duration::from_secs(120),
    };

    #[test]
    fn degraded_workspaces_are_polled_at_the_shorter_interval() {
        let last = Some(at(12, 0));
        assert_eq!(poll_interval(Health::Healthy, &SCHEDULE), SCHEDULE.interval);
        assert_eq!(
            poll_interval(Health::Degraded, &SCHEDULE),
            SCHEDULE.degraded_interval
        );
        assert_eq!(
            next_round_at(last, at(9, 0), Health::Healthy, &SCHEDULE),
            at(12, 15)
        );
        assert_eq!(
            next_round_at(last, at(9, 0), Health::Degraded, &SCHEDULE),
            at(12, 2)
        );
    }

    #[test]
    fn the_first_round_is_an_interval_after_connecting() {
        assert_eq!(
            next_round_at(None, at(9, 0), Health::Healthy, &SCHEDULE),
            at(9, 15)
        );
    }

    #[test]
    fn an_interval_too_long_to_add_is_never_due() {
        let forever = Schedule {
            interval: Duration::MAX,
            degraded_interval: Duration::MAX,
        };
        assert_eq!(
            next_round_at(Some(at(12, 0)), at(9, 0), Health::Healthy, &forever),
            DateTime::<Utc>::MAX_UTC
        );
    }
}
