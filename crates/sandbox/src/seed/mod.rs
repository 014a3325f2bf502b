//! Deterministic seeding.
//!
//! - `demo`: the reference fixtures (§4.2 for org `orNoatdUnm1w`, §4.4 for realm
//!   `9130357766900456`, plus the parents and tax rate they refer to), exactly.
//! - `variety`: `demo` plus the cases sync rules must be tested on ([`variety`]): every QBO
//!   AccountType, sub-account chains, every Item type, Class/Department hierarchies, multi-rate
//!   and one-sided tax codes, inactive entities of each kind, a non-default company; Fyle
//!   employees disabled and not yet accepted, cards in several number formats, dependent values,
//!   merchants, a custom SELECT field with 5,000 options — and a second org
//!   ([`OTHER_ORG_ID`]) with look-alike rows that must never appear in the first org's lists.
//! - `--generate N` ([`generate`]): N objects per type with stable ids, names and timestamps,
//!   varied in the same ways (see there).

use serde_json::{Map, Value};

use crate::{
    config::{SandboxConfig, Seed},
    fyle::{
        FyleState,
        org::FyleOrg,
        resources::{Mode, Resource, build},
    },
    qbo::{QboState, entity::EntityType, realm::Realm},
};

mod generate;
mod variety;

pub use self::{
    generate::{GENERATED_FIELD_ID, generate_fyle, generate_qbo},
    variety::{OTHER_ORG_ID, load_other_org, load_variety_fyle, load_variety_qbo},
};

const DEMO_FYLE: &str = include_str!("../fixtures/demo_fyle.json");
const DEMO_QBO: &str = include_str!("../fixtures/demo_qbo.json");

/// 2024-01-01T00:00:00Z in seconds.
pub const GENERATED_EPOCH: i64 = 1_704_067_200;

/// Seeds the configured org and realm.
pub fn apply(config: &SandboxConfig, fyle: &mut FyleState, qbo: &mut QboState) {
    fyle.add_org(crate::fyle::profile(&config.org_id));
    qbo.add_realm(&config.realm_id, chrono::Utc::now());
    if let Some(realm) = qbo.realms.get_mut(&config.realm_id) {
        realm.company = config.qbo_company.clone();
    }
    if matches!(config.seed, Seed::Demo | Seed::Variety) {
        if let Some(org) = fyle.orgs.get_mut(&config.org_id) {
            load_demo_fyle(org);
        }
        if let Some(realm) = qbo.realms.get_mut(&config.realm_id) {
            load_demo_qbo(realm);
        }
    }
    if config.seed == Seed::Variety {
        if let Some(org) = fyle.orgs.get_mut(&config.org_id) {
            load_variety_fyle(org);
        }
        if let Some(realm) = qbo.realms.get_mut(&config.realm_id) {
            load_variety_qbo(realm);
        }
        fyle.add_org(crate::fyle::profile(OTHER_ORG_ID));
        if let Some(org) = fyle.orgs.get_mut(OTHER_ORG_ID) {
            load_other_org(org);
        }
    }
    if config.generate > 0 {
        if let Some(org) = fyle.orgs.get_mut(&config.org_id) {
            for r in Resource::ALL {
                generate_fyle(org, r, config.generate);
            }
        }
        if let Some(realm) = qbo.realms.get_mut(&config.realm_id) {
            for et in EntityType::ALL {
                generate_qbo(realm, et, config.generate);
            }
        }
    }
}

/// Completes a fixture object with the resource's defaults and derived keys.
pub(crate) fn complete(
    r: Resource,
    item: &Map<String, Value>,
    org_id: &str,
) -> Option<Map<String, Value>> {
    let mut out = build(r, None, item, Mode::Admin).ok()?;
    for k in ["id", "created_at", "updated_at"] {
        if let Some(v) = item.get(k) {
            out.insert(k.to_owned(), v.clone());
        }
    }
    out.insert("org_id".to_owned(), Value::from(org_id));
    Some(out)
}

/// Loads the §4.2 fixtures into an org (their `org_id` becomes the org's).
pub fn load_demo_fyle(org: &mut FyleOrg) {
    let Ok(Value::Object(demo)) = serde_json::from_str::<Value>(DEMO_FYLE) else {
        return;
    };
    let org_id = org.id().to_owned();
    for (path, items) in demo {
        let (Some(r), Some(items)) = (Resource::from_path(&path), items.as_array().cloned()) else {
            continue;
        };
        for item in items.iter().filter_map(Value::as_object) {
            if let Some(row) = complete(r, item, &org_id) {
                org.load(r, row);
            }
        }
    }
}

/// Loads the §4.4 fixtures into a realm.
pub fn load_demo_qbo(realm: &mut Realm) {
    let Ok(Value::Object(demo)) = serde_json::from_str::<Value>(DEMO_QBO) else {
        return;
    };
    for (name, items) in demo {
        let (Some(et), Some(items)) = (EntityType::from_name(&name), items.as_array().cloned())
        else {
            continue;
        };
        for item in items.into_iter().filter_map(|v| v.as_object().cloned()) {
            realm.load(et, item);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::fyle::org::OrgProfile;

    #[test]
    fn demo_fixtures_load_completely() {
        let mut org = FyleOrg::new(OrgProfile {
            org_id: "orNoatdUnm1w".into(),
            name: "Fyle".into(),
            currency: "USD".into(),
            domain: "fylehq.com".into(),
            admin: json!({}),
        });
        load_demo_fyle(&mut org);
        assert_eq!(org.collection(Resource::Categories).len(), 3);
        assert_eq!(org.collection(Resource::ExpenseFields).len(), 4);
        assert!(org.merchant_field().is_some());
        let emp = org
            .collection(Resource::Employees)
            .iter()
            .next()
            .expect("one employee");
        assert!(
            emp.json.contains_key("is_mobile_verified"),
            "trimmed fixture completed with defaults"
        );

        let mut realm = Realm::new("9130357766900456", -420);
        load_demo_qbo(&mut realm);
        assert_eq!(realm.table(EntityType::Account).len(), 5);
        assert_eq!(realm.table(EntityType::TaxRate).len(), 2);
    }

    #[test]
    fn generator_is_stable_and_fast_enough() {
        let mut state = QboState::new(Duration::from_secs(1), Duration::ZERO, -420);
        state.add_realm("r", chrono::Utc::now());
        let realm = state.realms.get_mut("r").expect("realm");
        generate_qbo(realm, EntityType::Customer, 2000);
        let first = realm
            .table(EntityType::Customer)
            .get(1_000_001)
            .expect("first id is stable");
        assert_eq!(first.json["DisplayName"], "Customer 000001");
        assert_eq!(first.updated, GENERATED_EPOCH);
    }
}
