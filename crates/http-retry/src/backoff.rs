//! Retry schedule: capped exponential backoff with "equal jitter", honouring `Retry-After`. Pure.
//!
//! After failed attempt `n` (1-based) the client waits `d/2 + jitter·d/2`, where
//! `d = min(max_delay, base_delay·2^(n−1))` and `jitter ∈ [0, 1)`: at least half the exponential
//! step (so a burst of 429s really backs off) and at most the whole step (so replicas that failed
//! together spread out). A `Retry-After` from the server is a floor, capped by `max_retry_after` so
//! a hostile or broken header cannot park a sync for hours. Attempts are bounded by `max_attempts`.
//!
//! *What* is retried is each client's decision (its module docs say): typically 429, 5xx and
//! transport failures of reads; of writes, 429 always (the request was refused, not processed)
//! and 5xx/transport only with [`RetryPolicy::retry_writes`] or when the partner makes a repeated
//! write harmless (Fyle's uniqueness rule, QBO's `requestid`).

use std::time::Duration;

/// How often and how patiently the client retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (1 = never retry).
    pub max_attempts: u32,
    /// First backoff step.
    pub base_delay: Duration,
    /// Largest backoff step.
    pub max_delay: Duration,
    /// Largest `Retry-After` honoured.
    pub max_retry_after: Duration,
    /// Repeat POSTs after a 5xx or a transport failure (429 is always repeated).
    pub retry_writes: bool,
}

impl Default for RetryPolicy {
    /// 6 attempts, 250 ms doubling to 8 s, `Retry-After` up to 60 s, writes retried — the Fyle
    /// client's default (the incumbent retries Fyle 5xx three times on every call); other clients
    /// set their own.
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
            retry_writes: true,
        }
    }
}

/// The wait after failed attempt `attempt` (1-based). `jitter` is a uniform draw from `[0, 1)`
/// (clamped); `retry_after` is the server's `Retry-After`, if any.
pub fn backoff_delay(
    policy: &RetryPolicy,
    attempt: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let shift = attempt.saturating_sub(1).min(31);
    let step = policy
        .base_delay
        .saturating_mul(1u32 << shift)
        .min(policy.max_delay);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let half = step / 2;
    let delay = half + (step - half).mul_f64(jitter);
    match retry_after {
        Some(ra) => delay.max(ra.min(policy.max_retry_after)),
        None => delay,
    }
}

/// Reads a `Retry-After` value: delta-seconds or an HTTP-date (relative to `now`).
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(30),
            retry_writes: true,
        }
    }

    #[test]
    fn steps_double_from_the_base_and_stop_at_the_cap() {
        let p = policy();
        let full: Vec<u128> = (1..=7)
            .map(|n| backoff_delay(&p, n, None, 0.999_999).as_millis())
            .collect();
        assert_eq!(full, vec![99, 199, 399, 799, 1599, 1999, 1999]);
        let floor: Vec<u128> = (1..=7)
            .map(|n| backoff_delay(&p, n, None, 0.0).as_millis())
            .collect();
        assert_eq!(floor, vec![50, 100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_stays_between_half_and_the_whole_step() {
        let p = policy();
        for n in 1..=8 {
            let lo = backoff_delay(&p, n, None, 0.0);
            let hi = backoff_delay(&p, n, None, 1.0);
            assert_eq!(hi, lo * 2, "attempt {n}: [step/2, step]");
            let mid = backoff_delay(&p, n, None, 0.5);
            assert!(lo < mid && mid < hi);
        }
        // out-of-range draws are clamped, never panic
        assert_eq!(
            backoff_delay(&p, 1, None, f64::NAN),
            Duration::from_millis(50)
        );
        assert_eq!(backoff_delay(&p, 1, None, 7.0), Duration::from_millis(100));
    }

    #[test]
    fn huge_attempt_numbers_do_not_overflow() {
        let p = policy();
        assert_eq!(backoff_delay(&p, u32::MAX, None, 1.0), p.max_delay);
        assert_eq!(backoff_delay(&p, 0, None, 1.0), p.base_delay);
    }

    #[test]
    fn retry_after_is_a_floor_capped_by_the_policy() {
        let p = policy();
        assert_eq!(
            backoff_delay(&p, 1, Some(Duration::from_secs(3)), 0.0),
            Duration::from_secs(3),
            "longer than the step: the server's wish wins"
        );
        assert_eq!(
            backoff_delay(&p, 6, Some(Duration::from_millis(10)), 0.0),
            Duration::from_secs(1),
            "shorter than the step: the step wins"
        );
        assert_eq!(
            backoff_delay(&p, 1, Some(Duration::from_secs(3600)), 0.0),
            Duration::from_secs(30),
            "capped"
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .expect("instant")
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }
}
