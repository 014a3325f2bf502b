//! The size limit: a sync of an entity with too many active records is skipped (incumbent
//! §2.9, checklist #29–#30).
//!
//! - Allowed when the active count is **at most** [`SizeLimit::max_active`] (exactly the limit
//!   is allowed), or when the workspace was created **on or before**
//!   [`SizeLimit::applies_to_workspaces_created_after`] (older workspaces are grandfathered), or
//!   for employees, which are exempt.
//! - The incumbent compares the creation time with 2024-10-01 00:00 in the server's time zone;
//!   ours is an explicit UTC instant, configurable like the maximum.
//! - Order matters to the caller, not to this function: the count is stored on **every**
//!   attempt, before this check and whether or not the sync then runs (#29), so operators see
//!   why a workspace is not syncing.

use chrono::{DateTime, TimeZone, Utc};

use super::SyncEntity;

/// The size limit's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeLimit {
    /// Most active records an entity may have (default 30,000, the incumbent's
    /// `SYNC_UPPER_LIMIT`).
    pub max_active: u64,
    /// The limit binds workspaces created strictly after this instant (default 2024-10-01
    /// 00:00 UTC).
    pub applies_to_workspaces_created_after: DateTime<Utc>,
}

impl Default for SizeLimit {
    fn default() -> Self {
        Self {
            max_active: 30_000,
            applies_to_workspaces_created_after: Utc
                .with_ymd_and_hms(2024, 10, 1, 0, 0, 0)
                .single()
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        }
    }
}

/// Whether `entity` may be synced for a workspace created at `workspace_created_at` whose QBO
/// company has `count_active` active records of it.
pub fn sync_allowed(
    count_active: u64,
    entity: SyncEntity,
    workspace_created_at: DateTime<Utc>,
    limits: &SizeLimit,
) -> bool {
    !entity.size_limited()
        || count_active <= limits.max_active
        || workspace_created_at <= limits.applies_to_workspaces_created_after
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn after_cutoff() -> DateTime<Utc> {
        SizeLimit::default().applies_to_workspaces_created_after + Duration::days(30)
    }

    #[test]
    fn defaults_are_the_incumbents() {
        let limits = SizeLimit::default();
        assert_eq!(limits.max_active, 30_000);
        assert_eq!(
            limits.applies_to_workspaces_created_after.to_rfc3339(),
            "2024-10-01T00:00:00+00:00"
        );
    }

    #[test]
    fn exactly_the_limit_is_allowed_and_one_more_is_not() {
        let limits = SizeLimit::default();
        let created = after_cutoff();
        assert!(sync_allowed(30_000, SyncEntity::Customer, created, &limits));
        assert!(!sync_allowed(
            30_001,
            SyncEntity::Customer,
            created,
            &limits
        ));
    }

    #[test]
    fn every_entity_but_employees_is_limited() {
        let limits = SizeLimit::default();
        for entity in SyncEntity::ALL {
            let allowed = sync_allowed(1_000_000, entity, after_cutoff(), &limits);
            assert_eq!(allowed, entity == SyncEntity::Employee, "{entity}");
        }
    }

    #[test]
    fn workspaces_created_up_to_the_cutoff_are_grandfathered() {
        let limits = SizeLimit::default();
        let cutoff = limits.applies_to_workspaces_created_after;
        assert!(sync_allowed(50_000, SyncEntity::Account, cutoff, &limits));
        assert!(sync_allowed(
            50_000,
            SyncEntity::Account,
            cutoff - Duration::days(400),
            &limits
        ));
        assert!(!sync_allowed(
            50_000,
            SyncEntity::Account,
            cutoff + Duration::seconds(1),
            &limits
        ));
    }

    #[test]
    fn the_limit_is_configurable() {
        let limits = SizeLimit {
            max_active: 10,
            ..SizeLimit::default()
        };
        assert!(sync_allowed(
            10,
            SyncEntity::Vendor,
            after_cutoff(),
            &limits
        ));
        assert!(!sync_allowed(
            11,
            SyncEntity::Vendor,
            after_cutoff(),
            &limits
        ));
    }
}
