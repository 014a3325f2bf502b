//! Creating QBO employees and vendors from Fyle values, when the workspace's import settings ask
//! for it ([`crate::settings::AutoCreate`]: `auto_create_destination_entity` with
//! `employee_field_mapping` EMPLOYEE or VENDOR for Fyle employees, `auto_create_merchants_as_vendors`
//! for merchants).
//!
//! The path, in three steps, none of which calls QBO inside a database transaction:
//!
//! 1. [`FyleValues`] consumes `sync.expense-attributes.v1` in the platform's idempotent handler
//!    (exactly once per envelope): each created, updated, renamed or reactivated **active**
//!    EMPLOYEE or MERCHANT the settings cover ([`wanted`]) becomes a row of
//!    `qbo_pending_creates` — unless the workspace already has an active destination attribute
//!    of that name (nothing to create, no QBO request spent) or a request for the name already
//!    waits (one waiting row per name, a unique index).
//! 2. The `qbo-auto-create` task ([`Creator`]) serves a realm's due rows under the lease
//!    `qbo-auto-create:<realm>`, outside transactions, with [`creator::ensure`]: look the name up
//!    (`SELECT * FROM Vendor WHERE Active IN (true, false) AND DisplayName = '…'`, quoted by the
//!    client's builder); link an active match; create otherwise, with a `requestid` derived from
//!    workspace, entity and name ([`request_id`]) so a repeat of the same create — a crash
//!    after the POST, a redelivery, `CreateEntity` racing the task — is answered by QBO with the
//!    first answer instead of creating a second entity.
//! 3. In one transaction (lease checked): the entity goes through [`crate::apply::apply_entities`]
//!    like any synced entity, the row is marked `auto_created` when qbo-sync created it, the
//!    `sync.destination-attributes.v1` change and a `sync.fyle-auto-created.v1`
//!    [`FyleAttributeAutoCreated`](attrsync_proto::v1::FyleAttributeAutoCreated) for mapping go
//!    to the outbox, and the pending row is deleted.
//!
//! `CreateEntity` (gRPC) runs [`creator::ensure`] and step 3 ([`creator::record`])
//! synchronously for one name, without the event for mapping (there is no Fyle attribute
//! behind it).
//!
//! **Duplicate names** (fault 6240: QBO names are unique across customers, vendors and employees,
//! case-insensitively): the same list is queried again. An active entity of that name — another
//! writer created it between our lookup and our create — is linked. Otherwise nothing is
//! linked and the request fails for good, with the reason kept on the row (`status = FAILED`):
//! an **inactive** entity of that name was deactivated by a bookkeeper, and reactivating it
//! behind their back is not ours to decide; a name held by **another list** (a customer called
//! like the merchant) cannot stand in for a vendor — expenses exported against a customer's id
//! as a vendor would be refused. Both are visible to operators and counted
//! (`qbo_sync_auto_create_total{outcome}`). A created entity QBO answers inactive (a `requestid`
//! replayed after the entity was deactivated) is treated the same way.
//!
//! Failure policy: nothing is lost and nothing is created twice. A request stays in Kafka until
//! its row is committed and in `qbo_pending_creates` until its entity is stored. QBO down,
//! throttled past the client's retries, the connection expired or missing, the database, the
//! mapping lookup: the row stays with `attempts + 1` and `not_before` pushed back exponentially
//! (`webhooks.retry_initial` … `retry_max`, [`crate::fetch::retry_delay`]) and the realm's
//! round stops. A refusal a repeat cannot fix (a duplicate as above, QBO's validation) fails
//! the row. Rows of a workspace that is gone, moved to another realm, or whose settings no
//! longer ask for the creation are dropped with a count. Every write of step 3 is an
//! idempotent upsert, so a round repeated after a crash changes nothing more.

mod consumer;
pub(crate) mod creator;

use attrsync_proto::v1::{ChangeKind, ExpenseAttributeChange};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

pub use self::consumer::FyleValues;
pub(crate) use self::creator::Creator;
use crate::{rules::SyncEntity, settings::AutoCreate};

/// QBO's longest `DisplayName`.
pub const MAX_NAME_CHARS: usize = 500;

/// One QBO entity to find or create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    /// `Employee` or `Vendor`.
    pub entity: SyncEntity,
    /// The `DisplayName`, trimmed.
    pub display_name: String,
    pub email: Option<String>,
    pub currency: Option<String>,
}

/// Why a Fyle change asks for nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Not an employee or a merchant, or the settings do not cover its type.
    NotCovered,
    /// Inactive in Fyle, or a change that does not bring a value (deactivation).
    Inactive,
    /// No name to give QBO (an employee without a full name, a blank merchant).
    NoName,
    /// A name QBO refuses: a `:` (it separates levels of names) or longer than QBO allows.
    InvalidName,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::NotCovered => "not_covered",
            Skip::Inactive => "inactive",
            Skip::NoName => "no_name",
            Skip::InvalidName => "invalid_name",
        }
    }
}

/// The destination attribute type an auto-created entity of `entity` becomes.
pub fn destination_type(entity: SyncEntity) -> &'static str {
    match entity {
        SyncEntity::Employee => "EMPLOYEE",
        _ => "VENDOR",
    }
}

/// Checks a `DisplayName` before QBO is asked (pure).
pub fn check_name(name: &str) -> Result<(), Skip> {
    if name.is_empty() {
        Err(Skip::NoName)
    } else if name.contains(':') || name.chars().count() > MAX_NAME_CHARS {
        Err(Skip::InvalidName)
    } else {
        Ok(())
    }
}

/// Which entity the settings create for a Fyle attribute type, if any (pure).
pub fn target(source_attribute_type: &str, settings: &AutoCreate) -> Option<SyncEntity> {
    match source_attribute_type {
        "EMPLOYEE" => settings.employees_as,
        "MERCHANT" => settings.merchants_as_vendors.then_some(SyncEntity::Vendor),
        _ => None,
    }
}

/// What a Fyle attribute change asks qbo-sync to create (pure). An employee's value is their
/// email; the QBO name is `detail.full_name`. A merchant's value is its name.
pub fn wanted(
    change: &ExpenseAttributeChange,
    settings: &AutoCreate,
) -> Result<CreateRequest, Skip> {
    let entity = target(&change.attribute_type, settings).ok_or(Skip::NotCovered)?;
    let brings_a_value = matches!(
        ChangeKind::try_from(change.kind),
        Ok(ChangeKind::Created
            | ChangeKind::Updated
            | ChangeKind::Renamed
            | ChangeKind::Reactivated)
    );
    if !change.active || !brings_a_value {
        return Err(Skip::Inactive);
    }
    let (display_name, email) = if change.attribute_type == "EMPLOYEE" {
        let detail: Value = serde_json::from_str(&change.detail_json).unwrap_or(Value::Null);
        let full_name = detail
            .get("full_name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let email = change.value.trim();
        (
            full_name.trim().to_owned(),
            email.contains('@').then(|| email.to_owned()),
        )
    } else {
        (change.value.trim().to_owned(), None)
    };
    check_name(&display_name)?;
    Ok(CreateRequest {
        entity,
        display_name,
        email,
        currency: None,
    })
}

/// The `requestid` of the create for `display_name` (pure): the same workspace, entity and name
/// (case-insensitively, as QBO compares names) always give the same id, so QBO answers a
/// repeated create with its first answer. 35 characters (QBO allows 50).
pub fn request_id(workspace_id: i64, entity: SyncEntity, display_name: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"attrsync-auto-create\0");
    hash.update(workspace_id.to_be_bytes());
    hash.update(entity.as_str().as_bytes());
    hash.update([0]);
    hash.update(display_name.trim().to_lowercase().as_bytes());
    let digest = hex::encode(hash.finalize());
    format!("ac-{}", &digest[..32])
}

/// The create body QBO is sent (pure). An employee's name is split into `GivenName` (all but
/// the last word) and `FamilyName` (the last word), which QBO's Employee expects beside
/// `DisplayName`.
pub fn create_body(request: &CreateRequest) -> Value {
    let mut body = Map::new();
    body.insert(
        "DisplayName".into(),
        Value::from(request.display_name.as_str()),
    );
    if request.entity == SyncEntity::Employee {
        let words: Vec<&str> = request.display_name.split_whitespace().collect();
        match words.split_last() {
            Some((last, [])) => {
                body.insert("GivenName".into(), Value::from(*last));
            }
            Some((last, first)) => {
                body.insert("GivenName".into(), Value::from(first.join(" ")));
                body.insert("FamilyName".into(), Value::from(*last));
            }
            None => {}
        }
    }
    if let Some(email) = &request.email {
        body.insert("PrimaryEmailAddr".into(), json!({ "Address": email }));
    }
    if let Some(currency) = &request.currency {
        body.insert("CurrencyRef".into(), json!({ "value": currency }));
    }
    Value::Object(body)
}

/// What a `DisplayName` lookup found (pure).
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// An active entity of that name: link it.
    Active(Value),
    /// Only an inactive one (its QBO id).
    Inactive(String),
    Nothing,
}

const DELETED_SUFFIX: &str = " (deleted)";

/// Picks the entity named `name` (case-insensitively, QBO's `" (deleted)"` suffix ignored)
/// among the rows a lookup returned, preferring an active one (pure).
pub fn pick(name: &str, rows: &[Value]) -> Found {
    let wanted = name.trim().to_lowercase();
    let named: Vec<&Value> = rows
        .iter()
        .filter(|row| {
            row.get("DisplayName")
                .and_then(Value::as_str)
                .map(|n| {
                    n.trim()
                        .trim_end_matches(DELETED_SUFFIX)
                        .trim()
                        .to_lowercase()
                })
                .is_some_and(|n| n == wanted)
        })
        .collect();
    if let Some(active) = named.iter().find(|row| is_active(row)) {
        return Found::Active((*active).clone());
    }
    match named.first().and_then(|row| crate::apply::object_id(row)) {
        Some(id) => Found::Inactive(id),
        None => Found::Nothing,
    }
}

/// QBO's `Active` (absent means active).
pub fn is_active(object: &Value) -> bool {
    object
        .get("Active")
        .and_then(Value::as_bool)
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_ON: AutoCreate = AutoCreate {
        employees_as: Some(SyncEntity::Employee),
        merchants_as_vendors: true,
    };

    fn change(
        attribute_type: &str,
        value: &str,
        kind: ChangeKind,
        active: bool,
    ) -> ExpenseAttributeChange {
        ExpenseAttributeChange {
            attribute_type: attribute_type.into(),
            source_id: "src1".into(),
            value: value.into(),
            active,
            kind: kind as i32,
            detail_json: if attribute_type == "EMPLOYEE" {
                r#"{"full_name": " Joanna  Smith ", "user_id": "usq"}"#.into()
            } else {
                String::new()
            },
            ..Default::default()
        }
    }

    #[test]
    fn active_merchants_and_employees_with_a_value_qualify() {
        for kind in [
            ChangeKind::Created,
            ChangeKind::Updated,
            ChangeKind::Renamed,
            ChangeKind::Reactivated,
        ] {
            let merchant =
                wanted(&change("MERCHANT", " Uber ", kind, true), &ALL_ON).expect("wanted");
            assert_eq!(merchant.entity, SyncEntity::Vendor);
            assert_eq!(merchant.display_name, "Uber");
            assert_eq!(merchant.email, None);
        }
        let employee = wanted(
            &change("EMPLOYEE", "joanna@example.com", ChangeKind::Created, true),
            &ALL_ON,
        )
        .expect("wanted");
        assert_eq!(employee.entity, SyncEntity::Employee);
        assert_eq!(employee.display_name, "Joanna  Smith");
        assert_eq!(employee.email.as_deref(), Some("joanna@example.com"));
    }

    #[test]
    fn inactive_deactivated_uncovered_and_unnamed_values_do_not() {
        let skip = |c: ExpenseAttributeChange, s: &AutoCreate| wanted(&c, s).expect_err("skipped");
        assert_eq!(
            skip(
                change("MERCHANT", "Uber", ChangeKind::Deactivated, false),
                &ALL_ON
            ),
            Skip::Inactive
        );
        assert_eq!(
            skip(
                change("MERCHANT", "Uber", ChangeKind::Updated, false),
                &ALL_ON
            ),
            Skip::Inactive
        );
        assert_eq!(
            skip(
                change("CATEGORY", "Travel", ChangeKind::Created, true),
                &ALL_ON
            ),
            Skip::NotCovered
        );
        assert_eq!(
            skip(
                change("MERCHANT", "Uber", ChangeKind::Created, true),
                &AutoCreate::default()
            ),
            Skip::NotCovered
        );
        let employees_only_as_vendors = AutoCreate {
            employees_as: Some(SyncEntity::Vendor),
            merchants_as_vendors: false,
        };
        assert_eq!(
            skip(
                change("MERCHANT", "Uber", ChangeKind::Created, true),
                &employees_only_as_vendors
            ),
            Skip::NotCovered
        );
        let as_vendor = wanted(
            &change("EMPLOYEE", "j@example.com", ChangeKind::Created, true),
            &employees_only_as_vendors,
        )
        .expect("wanted");
        assert_eq!(as_vendor.entity, SyncEntity::Vendor);
        let mut nameless = change("EMPLOYEE", "j@example.com", ChangeKind::Created, true);
        nameless.detail_json = r#"{"full_name": null}"#.into();
        assert_eq!(skip(nameless, &ALL_ON), Skip::NoName);
        assert_eq!(
            skip(change("MERCHANT", "  ", ChangeKind::Created, true), &ALL_ON),
            Skip::NoName
        );
        assert_eq!(
            skip(
                change("MERCHANT", "Travel: Air", ChangeKind::Created, true),
                &ALL_ON
            ),
            Skip::InvalidName
        );
        assert_eq!(
            skip(
                change("MERCHANT", &"x".repeat(501), ChangeKind::Created, true),
                &ALL_ON
            ),
            Skip::InvalidName
        );
    }

    #[test]
    fn the_request_id_depends_on_workspace_entity_and_name_only() {
        let id = request_id(7, SyncEntity::Vendor, "Uber");
        assert!(id.starts_with("ac-") && id.len() == 35, "{id}");
        assert_eq!(id, request_id(7, SyncEntity::Vendor, " uber "));
        assert_ne!(id, request_id(8, SyncEntity::Vendor, "Uber"));
        assert_ne!(id, request_id(7, SyncEntity::Employee, "Uber"));
        assert_ne!(id, request_id(7, SyncEntity::Vendor, "Uber Eats"));
    }

    #[test]
    fn create_bodies_name_the_entity_and_split_an_employee_name() {
        let vendor = CreateRequest {
            entity: SyncEntity::Vendor,
            display_name: "O'Brien & Sons".into(),
            email: None,
            currency: Some("USD".into()),
        };
        assert_eq!(
            create_body(&vendor),
            json!({"DisplayName": "O'Brien & Sons", "CurrencyRef": {"value": "USD"}})
        );
        let employee = CreateRequest {
            entity: SyncEntity::Employee,
            display_name: "Mary Ann Smith".into(),
            email: Some("mary@example.com".into()),
            currency: None,
        };
        assert_eq!(
            create_body(&employee),
            json!({"DisplayName": "Mary Ann Smith", "GivenName": "Mary Ann", "FamilyName": "Smith",
                   "PrimaryEmailAddr": {"Address": "mary@example.com"}})
        );
        let single = CreateRequest {
            display_name: "Cher".into(),
            email: None,
            ..employee
        };
        assert_eq!(
            create_body(&single),
            json!({"DisplayName": "Cher", "GivenName": "Cher"})
        );
    }

    #[test]
    fn a_lookup_prefers_an_active_match_and_reports_an_inactive_one() {
        let active = json!({"Id": "9", "DisplayName": "UBER", "Active": true});
        let inactive = json!({"Id": "4", "DisplayName": "Uber (deleted)", "Active": false});
        let other = json!({"Id": "5", "DisplayName": "Uber Eats", "Active": true});
        assert_eq!(
            pick("Uber", &[inactive.clone(), other.clone(), active.clone()]),
            Found::Active(active)
        );
        assert_eq!(
            pick("Uber", &[inactive, other.clone()]),
            Found::Inactive("4".into())
        );
        assert_eq!(pick("Uber", &[other]), Found::Nothing);
        assert_eq!(pick("Uber", &[]), Found::Nothing);
    }
}
