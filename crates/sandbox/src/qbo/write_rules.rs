//! The checks QBO applies to a client's create or update body before the write rules of
//! [`super::realm`] run (data API only; the sandbox admin API may write anything).
//!
//! - **Unknown properties are refused** (code 2010, "Request has invalid or unsupported
//!   property"), as QBO's strict deserialiser does; read-only properties a client echoes back
//!   (`Id`, `SyncToken`, `MetaData`, `domain`, `FullyQualifiedName`, balances …) are known and
//!   ignored. The known properties are those of reference §3.4 plus the writable ones of Intuit's
//!   entity reference for each type **(inferred lists)**.
//! - **Required properties on create**: `AccountType` for an Account (Intuit also accepts
//!   `AccountSubType` alone; the sandbox is stricter, as the sync never sends only a subtype);
//!   `Type` for an Item, and the account references its type needs — Service and NonInventory an
//!   `IncomeAccountRef`; Inventory `IncomeAccountRef`, `ExpenseAccountRef`, `AssetAccountRef`,
//!   `QtyOnHand` and `InvStartDate` **(inferred from Intuit's Item reference)**. Missing → 2020.
//! - **Values**: `AccountType` and Item `Type` must be one QBO knows, and an account reference
//!   must name an existing Account (6000, **(inferred)** detail texts).
//! - **Names must not contain `:`** — it separates the levels of `FullyQualifiedName` (6000,
//!   **(inferred)** code and text).

use serde_json::{Map, Value};

use super::{
    entity::EntityType,
    realm::{Realm, WriteError},
};

/// Every `AccountType` QBO accepts (Intuit's enumeration).
pub const ACCOUNT_TYPES: [&str; 15] = [
    "Bank",
    "Other Current Asset",
    "Fixed Asset",
    "Other Asset",
    "Accounts Receivable",
    "Equity",
    "Expense",
    "Other Expense",
    "Cost of Goods Sold",
    "Accounts Payable",
    "Credit Card",
    "Long Term Liability",
    "Other Current Liability",
    "Income",
    "Other Income",
];

/// Item types.
pub const ITEM_TYPES: [&str; 5] = ["Service", "NonInventory", "Inventory", "Group", "Category"];

/// Properties every entity accepts.
const COMMON: [&str; 6] = ["Id", "SyncToken", "sparse", "domain", "MetaData", "Active"];

/// Writable properties beyond the queryable ones of [`EntityType::fields`].
fn extra_properties(et: EntityType) -> &'static [&'static str] {
    match et {
        EntityType::Account => &["TaxCodeRef", "TxnLocationType", "AccountAlias"],
        EntityType::Item => &[
            "AssetAccountRef",
            "QtyOnHand",
            "InvStartDate",
            "SalesTaxCodeRef",
            "PurchaseTaxCodeRef",
            "PurchaseDesc",
            "SalesTaxIncluded",
            "PurchaseTaxIncluded",
            "ItemGroupDetail",
            "ClassRef",
            "PrefVendorRef",
            "ReorderPoint",
            "ItemCategoryType",
        ],
        EntityType::Class | EntityType::Department => &[],
        EntityType::Customer => &[
            "Title",
            "MiddleName",
            "Suffix",
            "PrimaryPhone",
            "Mobile",
            "Fax",
            "AlternatePhone",
            "WebAddr",
            "BillAddr",
            "ShipAddr",
            "Notes",
            "Taxable",
            "ResaleNum",
            "PreferredDeliveryMethod",
            "SalesTermRef",
            "PaymentMethodRef",
            "DefaultTaxCodeRef",
            "BalanceWithJobs",
            "OpenBalanceDate",
            "CustomerTypeRef",
        ],
        EntityType::Vendor => &[
            "Title",
            "MiddleName",
            "Suffix",
            "Mobile",
            "Fax",
            "AlternatePhone",
            "OtherContactInfo",
            "TaxIdentifier",
            "TermRef",
            "APAccountRef",
            "BillRate",
            "CostRate",
            "Notes",
            "GSTRegistrationType",
            "GSTIN",
            "BusinessNumber",
            "TaxReportingBasis",
        ],
        EntityType::Employee => &[
            "Title",
            "MiddleName",
            "Suffix",
            "PrimaryAddr",
            "Mobile",
            "SSN",
            "Gender",
            "HiredDate",
            "ReleasedDate",
            "BirthDate",
            "CostRate",
            "Organization",
        ],
        EntityType::TaxCode | EntityType::TaxRate => &[],
    }
}

/// Is `key` a property of `et` a client may send?
pub fn known_property(et: EntityType, key: &str) -> bool {
    COMMON.contains(&key) || et.fields().contains(&key) || extra_properties(et).contains(&key)
}

fn present(input: &Map<String, Value>, key: &str) -> bool {
    input.get(key).is_some_and(|v| match v {
        Value::Null => false,
        Value::String(s) => !s.trim().is_empty(),
        _ => true,
    })
}

/// The account references an Item of `item_type` must carry on create, then its other required
/// properties.
fn item_requirements(item_type: &str) -> &'static [&'static str] {
    match item_type {
        "Service" | "NonInventory" => &["IncomeAccountRef"],
        "Inventory" => &[
            "IncomeAccountRef",
            "ExpenseAccountRef",
            "AssetAccountRef",
            "QtyOnHand",
            "InvStartDate",
        ],
        _ => &[],
    }
}

/// Checks a client body (`creating`: no `Id`).
pub fn check(
    realm: &Realm,
    et: EntityType,
    input: &Map<String, Value>,
    creating: bool,
) -> Result<(), WriteError> {
    if let Some(unknown) = input.keys().find(|k| !known_property(et, k)) {
        return Err(WriteError::Unsupported(unknown.clone()));
    }
    let name_field = et.name_field();
    if let Some(name) = input.get(name_field).and_then(Value::as_str)
        && name.contains(':')
    {
        return Err(WriteError::Invalid(format!(
            "Invalid {name_field} : the name cannot contain a colon (:)"
        )));
    }
    match et {
        EntityType::Account => {
            if creating && !present(input, "AccountType") {
                return Err(WriteError::Required("AccountType"));
            }
            if let Some(t) = input.get("AccountType").and_then(Value::as_str)
                && !ACCOUNT_TYPES.contains(&t)
            {
                return Err(WriteError::Invalid(format!(
                    "Invalid Enumeration : {t} is not a valid AccountType"
                )));
            }
        }
        EntityType::Item => {
            if creating && !present(input, "Type") {
                return Err(WriteError::Required("Type"));
            }
            let item_type = input.get("Type").and_then(Value::as_str);
            if let Some(t) = item_type
                && !ITEM_TYPES.contains(&t)
            {
                return Err(WriteError::Invalid(format!(
                    "Invalid Enumeration : {t} is not a valid Item Type"
                )));
            }
            if creating
                && let Some(missing) = item_requirements(item_type.unwrap_or_default())
                    .iter()
                    .find(|k| !present(input, k))
            {
                return Err(WriteError::Required(missing));
            }
            for key in ["IncomeAccountRef", "ExpenseAccountRef", "AssetAccountRef"] {
                let Some(id) = input
                    .get(key)
                    .and_then(|r| r.get("value"))
                    .and_then(Value::as_str)
                else {
                    continue;
                };
                let exists = id
                    .parse::<u64>()
                    .ok()
                    .and_then(|n| realm.table(EntityType::Account).get(n))
                    .is_some();
                if !exists {
                    return Err(WriteError::Invalid(format!(
                        "Invalid Reference Id : {key} {id} is not an existing Account"
                    )));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn echoed_read_only_properties_are_known_invented_ones_are_not() {
        let realm = Realm::new("1", 0);
        let echo = obj(
            json!({"Id": "30", "SyncToken": "0", "sparse": true, "domain": "QBO",
            "MetaData": {}, "DisplayName": "Books", "Balance": 0, "CurrencyRef": {"value": "USD"}}),
        );
        assert_eq!(check(&realm, EntityType::Vendor, &echo, false), Ok(()));
        assert_eq!(
            check(
                &realm,
                EntityType::Vendor,
                &obj(json!({"DisplayName": "B", "Colour": "red"})),
                true
            ),
            Err(WriteError::Unsupported("Colour".into()))
        );
    }

    #[test]
    fn items_need_the_account_refs_of_their_type() {
        let realm = Realm::new("1", 0);
        let service = obj(json!({"Name": "Design", "Type": "Service"}));
        assert_eq!(
            check(&realm, EntityType::Item, &service, true),
            Err(WriteError::Required("IncomeAccountRef"))
        );
        let category = obj(json!({"Name": "Hardware", "Type": "Category"}));
        assert_eq!(check(&realm, EntityType::Item, &category, true), Ok(()));
        let dangling =
            obj(json!({"Name": "Design", "Type": "Service", "IncomeAccountRef": {"value": "999"}}));
        assert!(matches!(
            check(&realm, EntityType::Item, &dangling, true),
            Err(WriteError::Invalid(_))
        ));
    }
}
