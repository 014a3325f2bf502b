//! Incremental pulls: how to ask QBO for what changed since the watermark (checklist #31).
//!
//! - No watermark (never pulled) → [`PullMode::Full`].
//! - The window starts at `watermark − overlap`: the overlap re-reads a margin so a change
//!   committed in QBO just before the watermark was taken, but stamped earlier, is not missed
//!   (the incumbent uses a day; ours is configured). Re-reading is harmless: unchanged rows have
//!   equal content hashes and cause no write or event. A watermark in the future (clock skew)
//!   is clamped to `now` first, or the window would start after changes it must include.
//! - CDC entities (all but `TaxCode`) → [`PullMode::Cdc`] — one `/cdc` call can cover several
//!   entities — as long as the window start is within CDC's 30-day look-back, less a safety
//!   margin of an hour for clock differences with Intuit; older → [`PullMode::Full`].
//! - `TaxCode` (CDC does not support it, reference §3.5) → [`PullMode::LastUpdatedQuery`]:
//!   `WHERE Metadata.LastUpdatedTime >= since`, which has no look-back limit. A `TaxRate`'s
//!   `RateValue` edit does not touch its codes' `LastUpdatedTime`; full pulls (reconcile) catch
//!   those.
//! - Deletions: CDC reports them (tombstones, inactive rows); `LastUpdatedTime` queries see
//!   deactivations (name lists are never hard-deleted). Only a full pass can deactivate what is
//!   no longer returned (#33).

use chrono::{DateTime, Duration, Utc};

use super::SyncEntity;

/// How far back QBO's Change Data Capture answers (reference §3.5).
pub const CDC_LOOKBACK: Duration = Duration::days(30);

/// Kept clear of [`CDC_LOOKBACK`]'s edge: a window starting that close to it is pulled in full.
pub const CDC_LOOKBACK_MARGIN: Duration = Duration::hours(1);

/// How to pull an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullMode {
    /// Every record, active and inactive.
    Full,
    /// `GET /cdc?entities=…&changedSince=…`.
    Cdc { changed_since: DateTime<Utc> },
    /// `SELECT * FROM <entity> WHERE Metadata.LastUpdatedTime >= since` (active and inactive).
    LastUpdatedQuery { since: DateTime<Utc> },
}

/// The pull mode for `entity`, given the last watermark, the current time and the overlap.
pub fn incremental_mode(
    entity: SyncEntity,
    watermark: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    overlap: std::time::Duration,
) -> PullMode {
    let Some(watermark) = watermark else {
        return PullMode::Full;
    };
    let Ok(overlap) = Duration::from_std(overlap) else {
        return PullMode::Full;
    };
    let Some(since) = watermark.min(now).checked_sub_signed(overlap) else {
        return PullMode::Full;
    };
    if !entity.supports_cdc() {
        return PullMode::LastUpdatedQuery { since };
    }
    match now.checked_sub_signed(CDC_LOOKBACK - CDC_LOOKBACK_MARGIN) {
        Some(oldest) if since >= oldest => PullMode::Cdc {
            changed_since: since,
        },
        _ => PullMode::Full,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const OVERLAP: std::time::Duration = std::time::Duration::from_secs(2 * 3600);

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 31, 12, 0, 0)
            .single()
            .expect("a valid time")
    }

    #[test]
    fn never_pulled_means_full() {
        for entity in SyncEntity::ALL {
            assert_eq!(
                incremental_mode(entity, None, now(), OVERLAP),
                PullMode::Full
            );
        }
    }

    #[test]
    fn a_recent_watermark_uses_cdc_from_watermark_minus_overlap() {
        let watermark = now() - Duration::days(3);
        assert_eq!(
            incremental_mode(SyncEntity::Customer, Some(watermark), now(), OVERLAP),
            PullMode::Cdc {
                changed_since: watermark - Duration::hours(2)
            }
        );
    }

    #[test]
    fn tax_codes_use_a_last_updated_query_at_any_age() {
        for age in [Duration::days(1), Duration::days(90)] {
            let watermark = now() - age;
            assert_eq!(
                incremental_mode(SyncEntity::TaxCode, Some(watermark), now(), OVERLAP),
                PullMode::LastUpdatedQuery {
                    since: watermark - Duration::hours(2)
                }
            );
        }
    }

    #[test]
    fn a_window_beyond_the_cdc_look_back_is_a_full_pull() {
        let old = now() - Duration::days(31);
        assert_eq!(
            incremental_mode(SyncEntity::Vendor, Some(old), now(), OVERLAP),
            PullMode::Full
        );
    }

    #[test]
    fn the_overlap_counts_towards_the_look_back() {
        // The watermark is inside 30 days, but watermark − overlap is not.
        let watermark = now() - Duration::days(30) + Duration::minutes(30);
        assert_eq!(
            incremental_mode(SyncEntity::Account, Some(watermark), now(), OVERLAP),
            PullMode::Full
        );
        let watermark = now() - Duration::days(29);
        assert!(matches!(
            incremental_mode(SyncEntity::Account, Some(watermark), now(), OVERLAP),
            PullMode::Cdc { .. }
        ));
    }

    #[test]
    fn the_edge_of_the_look_back_keeps_a_margin() {
        let no_overlap = std::time::Duration::ZERO;
        let at_margin = now() - (CDC_LOOKBACK - CDC_LOOKBACK_MARGIN);
        assert_eq!(
            incremental_mode(SyncEntity::Class, Some(at_margin), now(), no_overlap),
            PullMode::Cdc {
                changed_since: at_margin
            }
        );
        let past_margin = at_margin - Duration::seconds(1);
        assert_eq!(
            incremental_mode(SyncEntity::Class, Some(past_margin), now(), no_overlap),
            PullMode::Full
        );
    }

    #[test]
    fn a_future_watermark_is_clamped_to_now() {
        let skewed = now() + Duration::hours(5);
        assert_eq!(
            incremental_mode(SyncEntity::Employee, Some(skewed), now(), OVERLAP),
            PullMode::Cdc {
                changed_since: now() - Duration::hours(2)
            }
        );
    }
}
