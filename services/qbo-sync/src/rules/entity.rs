//! The QBO entities qbo-sync keeps in sync, one per incumbent `sync_X` method (incumbent §2.2).
//!
//! The list is closed on purpose: every rule in this module (`derive`, the size limit, the pull
//! mode, webhook coalescing) matches on [`SyncEntity`] exhaustively, so adding an entity makes
//! the compiler point at every decision that has to be made for it.
//!
//! - `TaxRate` is not here: rates are never stored as attributes; they are looked up while tax
//!   codes are derived (see [`super::tax`]).
//! - Entity names compare case-insensitively, as webhooks and queries spell them differently.

use std::{fmt, str::FromStr};

use attrsync_core::attribute::{QboEntity, UnknownName};

/// One QBO entity that becomes destination attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SyncEntity {
    Account,
    Item,
    Vendor,
    Customer,
    Class,
    Department,
    Employee,
    TaxCode,
}

impl SyncEntity {
    /// Every entity, in the order the incumbent's `sync_dimensions` visits them.
    pub const ALL: [SyncEntity; 8] = [
        Self::Account,
        Self::Employee,
        Self::Vendor,
        Self::Customer,
        Self::Class,
        Self::TaxCode,
        Self::Department,
        Self::Item,
    ];

    /// The entity name as QBO spells it in queries, URLs and webhooks.
    pub fn as_str(self) -> &'static str {
        self.qbo_entity().as_str()
    }

    /// The same entity in `attrsync-core`'s vocabulary.
    pub fn qbo_entity(self) -> QboEntity {
        match self {
            Self::Account => QboEntity::Account,
            Self::Item => QboEntity::Item,
            Self::Vendor => QboEntity::Vendor,
            Self::Customer => QboEntity::Customer,
            Self::Class => QboEntity::Class,
            Self::Department => QboEntity::Department,
            Self::Employee => QboEntity::Employee,
            Self::TaxCode => QboEntity::TaxCode,
        }
    }

    /// Whether QBO's Change Data Capture (`/cdc`) reports this entity. CDC does not support
    /// `TaxCode` or `TaxRate` (reference §3.5).
    pub fn supports_cdc(self) -> bool {
        !matches!(self, Self::TaxCode)
    }

    /// Whether QBO sends webhooks for this entity. `TaxCode` and `TaxRate` are not in Intuit's
    /// list of webhook entities (reference §3.8), so tax codes are kept fresh by pulls alone.
    pub fn arrives_by_webhook(self) -> bool {
        !matches!(self, Self::TaxCode)
    }

    /// Whether the size limit applies (incumbent §2.9, #30: every entity but employees).
    pub fn size_limited(self) -> bool {
        !matches!(self, Self::Employee)
    }
}

impl fmt::Display for SyncEntity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SyncEntity {
    type Err = UnknownName;

    /// Case-insensitive: `Account`, `account` and `ACCOUNT` are the same entity. `TaxRate`,
    /// transactions (`Bill`, `Invoice`, …) and anything unknown are errors.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownName(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_case_insensitively_and_only_for_synced_entities() {
        assert_eq!("customer".parse(), Ok(SyncEntity::Customer));
        assert_eq!("TAXCODE".parse(), Ok(SyncEntity::TaxCode));
        assert_eq!(" Item ".parse(), Ok(SyncEntity::Item));
        for not_synced in ["TaxRate", "Bill", "Invoice", "", "Accounts"] {
            assert!(
                not_synced.parse::<SyncEntity>().is_err(),
                "{not_synced} must not parse"
            );
        }
    }

    #[test]
    fn tax_codes_are_the_only_entity_without_cdc_or_webhooks() {
        let without_cdc: Vec<_> = SyncEntity::ALL
            .into_iter()
            .filter(|e| !e.supports_cdc())
            .collect();
        assert_eq!(without_cdc, [SyncEntity::TaxCode]);
        let without_webhooks: Vec<_> = SyncEntity::ALL
            .into_iter()
            .filter(|e| !e.arrives_by_webhook())
            .collect();
        assert_eq!(without_webhooks, [SyncEntity::TaxCode]);
    }

    #[test]
    fn employees_are_exempt_from_the_size_limit() {
        let exempt: Vec<_> = SyncEntity::ALL
            .into_iter()
            .filter(|e| !e.size_limited())
            .collect();
        assert_eq!(exempt, [SyncEntity::Employee]);
    }
}
