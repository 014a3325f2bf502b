//! `FullyQualifiedName` upkeep: when a parent's name changes, its descendants follow.

use serde_json::Value;

use super::{Realm, text};
use crate::qbo::entity::EntityType;

impl Realm {
    /// Recomputes `FullyQualifiedName` of the descendants of `parent`.
    pub(super) fn refresh_children(&mut self, et: EntityType, parent: u64) {
        let Some(pf) = self
            .table(et)
            .get(parent)
            .and_then(|p| text(&p.json, "FullyQualifiedName"))
            .map(str::to_owned)
        else {
            return;
        };
        let pid = parent.to_string();
        let children: Vec<u64> = self
            .table(et)
            .iter()
            .filter(|c| {
                c.json
                    .get("ParentRef")
                    .and_then(|p| p.get("value"))
                    .and_then(Value::as_str)
                    == Some(pid.as_str())
            })
            .map(|c| c.id)
            .collect();
        for cid in children {
            let Some(mut child) = self.table(et).get(cid).cloned() else {
                continue;
            };
            let own = text(&child.json, et.name_field())
                .unwrap_or_default()
                .to_owned();
            child.json.insert(
                "FullyQualifiedName".into(),
                Value::from(format!("{pf}:{own}")),
            );
            self.store(et, child);
            self.refresh_children(et, cid);
        }
    }
}
