//! Merging two name-list entities (sandbox admin only; QBO's UI merge).

use serde_json::{Map, Value};

use super::{EventKind, QboEvent, Realm, WriteError};
use crate::qbo::entity::EntityType;

impl Realm {
    /// Merges `from` into `into` (sandbox admin: "someone merged two vendors in QBO"): `from`
    /// becomes inactive (`" (deleted)"`), both get a new `SyncToken` and `LastUpdatedTime`, and one
    /// `Merge` event names `into` with `deletedId = from`. QBO merges only name-list entities of
    /// the same type (Customer, Vendor, Account, Item, Employee — reference §3.8).
    pub fn merge(
        &mut self,
        et: EntityType,
        from: u64,
        into: u64,
        now: i64,
    ) -> Result<(Value, QboEvent), WriteError> {
        if !matches!(
            et,
            EntityType::Customer
                | EntityType::Vendor
                | EntityType::Account
                | EntityType::Item
                | EntityType::Employee
        ) {
            return Err(WriteError::Invalid(format!(
                "{} objects cannot be merged",
                et.name()
            )));
        }
        if from == into {
            return Err(WriteError::Invalid(
                "an object cannot be merged into itself".into(),
            ));
        }
        for id in [from, into] {
            if !self.table(et).get(id).is_some_and(|e| e.active) {
                return Err(WriteError::NotFound(id.to_string()));
            }
        }
        let mut inactive = Map::new();
        inactive.insert("Active".into(), Value::Bool(false));
        self.patch(et, from, &inactive, now)?;
        let (out, _) = self.patch(et, into, &Map::new(), now)?;
        let mut event = self.event(et, into, EventKind::Merge, now);
        event.deleted_id = Some(from);
        Ok((out, event))
    }
}
