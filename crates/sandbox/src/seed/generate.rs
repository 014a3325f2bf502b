//! The generator: N objects per type with stable ids, names and timestamps (one second apart from
//! 2024-01-01T00:00:00Z), built directly as stored rows — without the per-write checks — so
//! 100,000 rows seed in well under a second in release builds. No webhooks fire.
//!
//! Ids: Fyle integers start at 10,000,001 (+1,000,000 per resource), string ids are
//! `<prefix>gen<n:08>`; QBO ids start at 1,000,001 per entity type. Names are `"<Type> <n:06>"`.
//!
//! Variety (object `i`, counting from 1), so rules can be tested and not just paths:
//! - QBO: every 10th object of every type is inactive (`" (deleted)"` names); accounts cycle
//!   through every AccountType with its Classification, every 3rd has no `AcctNum`, every 5th is
//!   a sub-account of the one before (`Parent:Child`); items cycle Service, NonInventory,
//!   Inventory, Group, Category with the account refs each needs (to generated accounts), every
//!   5th a sub-item; every 4th class/department and every 5th customer is a child of the one
//!   before; tax codes use two rates each — every 3rd sales-only, the next purchase-only.
//! - Fyle: every 7th employee is disabled and every 5th has not accepted the invite; card numbers
//!   cycle through four masked formats and every 3rd card has a nickname; `expense_fields` adds a
//!   custom SELECT field with `min(N, 5000)` options, a DEPENDENT_SELECT field under the project
//!   field and `min(N, 5000)` merchants; `dependent_expense_field_values` adds N values (every 10th
//!   disabled) of that dependent field. Categories, projects, cost centers, tax groups and
//!   departments stay plain and enabled (benchmarks page through them).

use serde_json::{Map, Value, json};

use super::{GENERATED_EPOCH, complete};
use crate::{
    fyle::{list_filter::format_micros, org::FyleOrg, resources::Resource},
    qbo::{
        entity::{EntityType, account_classification},
        realm::{DELETED_SUFFIX, Realm},
        store::format_time,
        write_rules::{ACCOUNT_TYPES, ITEM_TYPES},
    },
};

/// Id of the generated custom SELECT field (the dependent field is the next id).
pub const GENERATED_FIELD_ID: i64 = 13_000_001;

fn fyle_generated(r: Resource, i: usize) -> Value {
    match r {
        Resource::Categories => json!({"name": format!("Category {i:06}"), "code": i.to_string()}),
        Resource::Projects => json!({"name": format!("Project {i:06}"), "code": i.to_string(),
            "description": format!("Project - Project {i:06}, Id - {i}")}),
        Resource::CostCenters => {
            json!({"name": format!("Cost Center {i:06}"), "code": i.to_string()})
        }
        Resource::TaxGroups => {
            json!({"name": format!("Tax {i:06} @{}%", i % 30), "percentage": f64::from(u32::try_from(i % 30).unwrap_or(0)) / 100.0})
        }
        Resource::Employees => json!({
            "user_id": format!("usgen{i:08}"),
            "user": {"id": format!("usgen{i:08}"), "email": format!("employee{i:06}@example.com"), "full_name": format!("Employee {i:06}")},
            "code": format!("E{i:06}"), "roles": ["FYLER"],
            "is_enabled": !i.is_multiple_of(7), "has_accepted_invite": !i.is_multiple_of(5),
        }),
        Resource::CorporateCards => {
            let last4 = i % 10_000;
            let number = match i % 4 {
                0 => format!("xxxx-xxxx-xxxx-{last4:04}"),
                1 => format!("{last4:04}"),
                2 => format!("xxxx-{last4:04}"),
                _ => format!("**** **** **** {last4:04}"),
            };
            let nickname = i.is_multiple_of(3).then(|| format!("Card {i}"));
            json!({"bank_name": "Bank of America", "card_number": number, "nickname": nickname,
                "cardholder_name": format!("Employee {i:06}")})
        }
        Resource::Departments => {
            json!({"name": format!("Department {i:06}"), "code": format!("D{i:06}")})
        }
        Resource::DependentValues => json!({
            "parent_expense_field_value": format!("Project {:06}", (i - 1) % 100 + 1),
            "expense_field_value": format!("Cost Code {i:06}"),
            "expense_field_id": GENERATED_FIELD_ID + 1,
            "is_enabled": !i.is_multiple_of(10),
        }),
        Resource::ExpenseFields | Resource::Subscriptions => json!({}),
    }
}

fn load(org: &mut FyleOrg, r: Resource, mut item: Map<String, Value>, stamp: &str) {
    item.insert("created_at".into(), Value::from(stamp));
    item.insert("updated_at".into(), Value::from(stamp));
    let org_id = org.id().to_owned();
    if let Some(row) = complete(r, &item, &org_id) {
        org.load(r, row);
    }
}

fn project_field_id(org: &FyleOrg) -> Option<i64> {
    org.collection(Resource::ExpenseFields)
        .iter()
        .find(|f| f.json.get("column_name").and_then(Value::as_str) == Some("project_id"))
        .and_then(|f| f.json.get("id").and_then(Value::as_i64))
}

fn generate_fields(org: &mut FyleOrg, n: usize, stamp: &str) {
    let m = n.min(5000);
    let options: Vec<String> = (1..=m).map(|i| format!("Option {i:04}")).collect();
    let field = json!({"id": GENERATED_FIELD_ID, "field_name": "Generated Field", "column_name": "text_column9",
        "type": "SELECT", "options": options, "is_enabled": true, "is_mandatory": false, "is_custom": true,
        "placeholder": "Select Generated Field"});
    let parent = project_field_id(org).unwrap_or(GENERATED_FIELD_ID);
    let dependent = json!({"id": GENERATED_FIELD_ID + 1, "field_name": "Generated Cost Code",
        "column_name": "text_column10", "type": "DEPENDENT_SELECT", "options": [], "is_enabled": true,
        "is_mandatory": false, "is_custom": true, "parent_field_id": parent,
        "placeholder": "Select Generated Cost Code"});
    for item in [field, dependent] {
        if let Value::Object(m) = item {
            load(org, Resource::ExpenseFields, m, stamp);
        }
    }
    // merchants: the merchant field's options, kept and extended
    let merchant = org.merchant_field().map(|f| f.json.clone());
    let mut row = merchant.unwrap_or_else(|| {
        json!({"id": GENERATED_FIELD_ID + 2, "field_name": "Merchant", "column_name": "merchant",
            "type": "SELECT", "options": [], "is_enabled": true, "is_mandatory": false,
            "is_custom": false, "placeholder": "E.g. Uber"})
        .as_object()
        .cloned()
        .unwrap_or_default()
    });
    let mut names: Vec<Value> = row
        .get("options")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    names.extend((1..=m).map(|i| Value::from(format!("Merchant {i:06}"))));
    row.insert("options".into(), Value::Array(names));
    load(org, Resource::ExpenseFields, row, stamp);
}

/// Adds `n` generated objects of a resource to an org.
pub fn generate_fyle(org: &mut FyleOrg, r: Resource, n: usize) {
    let base_id = 10_000_001 + 1_000_000 * i64::try_from(r.index()).unwrap_or(0);
    match r {
        Resource::Subscriptions => return,
        Resource::ExpenseFields => {
            generate_fields(org, n, &format_micros(GENERATED_EPOCH * 1_000_000));
            return;
        }
        _ => {}
    }
    let parent = project_field_id(org).unwrap_or(GENERATED_FIELD_ID);
    for k in 0..n {
        let Value::Object(mut item) = fyle_generated(r, k + 1) else {
            continue;
        };
        let stamp = format_micros((GENERATED_EPOCH + i64::try_from(k).unwrap_or(0)) * 1_000_000);
        let id = match r.string_id_prefix() {
            Some(prefix) => Value::from(format!("{prefix}gen{:08}", k + 1)),
            None => Value::from(base_id + i64::try_from(k).unwrap_or(0)),
        };
        item.insert("id".into(), id);
        if r == Resource::DependentValues {
            item.insert("parent_expense_field_id".into(), Value::from(parent));
        }
        load(org, r, item, &stamp);
    }
}

const GEN_BASE: usize = 1_000_000;

fn named(prefix: &str, i: usize) -> String {
    format!("{prefix} {i:06}")
}

/// The generated object `i` of a type, before the common keys; `(json, parent index)`.
fn qbo_generated(et: EntityType, i: usize) -> (Value, Option<usize>) {
    let usd = json!({"value": "USD", "name": "United States Dollar"});
    let account_ref =
        |k: usize| json!({"value": (GEN_BASE + k).to_string(), "name": named("Account", k)});
    match et {
        EntityType::Account => {
            let t = ACCOUNT_TYPES[(i - 1) % ACCOUNT_TYPES.len()];
            let mut a = json!({"Name": named("Account", i), "Classification": account_classification(t),
                "AccountType": t, "AccountSubType": t.replace(' ', ""), "CurrentBalance": 0,
                "CurrentBalanceWithSubAccounts": 0, "CurrencyRef": usd});
            if !i.is_multiple_of(3) {
                a["AcctNum"] = Value::from((10_000 + i).to_string());
            }
            (a, i.is_multiple_of(5).then_some(i - 1))
        }
        EntityType::Item => {
            let t = ITEM_TYPES[(i - 1) % ITEM_TYPES.len()];
            let mut item = json!({"Name": named("Item", i), "Type": t, "Taxable": false, "UnitPrice": 0,
                "PurchaseCost": 0, "TrackQtyOnHand": t == "Inventory", "Description": format!("Generated item {i}")});
            if matches!(t, "Service" | "NonInventory" | "Inventory") {
                item["IncomeAccountRef"] = account_ref(1);
            }
            if t == "Inventory" {
                item["ExpenseAccountRef"] = account_ref(2);
                item["AssetAccountRef"] = account_ref(3);
                item["QtyOnHand"] = Value::from(10);
                item["InvStartDate"] = Value::from("2024-01-01");
            }
            (item, i.is_multiple_of(5).then_some(i - 1))
        }
        EntityType::Class => (
            json!({"Name": named("Class", i)}),
            i.is_multiple_of(4).then_some(i - 1),
        ),
        EntityType::Department => (
            json!({"Name": named("Department", i)}),
            i.is_multiple_of(4).then_some(i - 1),
        ),
        EntityType::Customer => {
            let name = named("Customer", i);
            (
                json!({"DisplayName": name, "CompanyName": name, "BillWithParent": false,
                "GivenName": "Generated", "FamilyName": format!("{i:06}"),
                "PrimaryEmailAddr": {"Address": format!("customer{i:06}@example.com")}, "Balance": 0,
                "CurrencyRef": usd, "PrintOnCheckName": name}),
                i.is_multiple_of(5).then_some(i - 1),
            )
        }
        EntityType::Vendor => {
            let name = named("Vendor", i);
            (
                json!({"DisplayName": name, "CompanyName": name, "PrintOnCheckName": name, "Vendor1099": false,
                "PrimaryEmailAddr": {"Address": format!("vendor{i:06}@example.com")}, "Balance": 0, "CurrencyRef": usd}),
                None,
            )
        }
        EntityType::Employee => {
            let name = named("Employee", i);
            (
                json!({"DisplayName": name, "GivenName": "Employee", "FamilyName": format!("{i:06}"), "PrintOnCheckName": name,
                "BillableTime": false, "BillRate": 0, "PrimaryEmailAddr": {"Address": format!("employee{i:06}@example.com")}}),
                None,
            )
        }
        EntityType::TaxCode => {
            let detail = |k: usize| {
                json!({"TaxRateRef": {"value": (GEN_BASE + k).to_string(), "name": named("Tax Rate", k)},
                "TaxTypeApplicable": "TaxOnAmount", "TaxOrder": 0})
            };
            let both = json!([detail(i), detail(i + 1)]);
            let (sales, purchase) = match i % 3 {
                1 => (both, json!([])),
                2 => (json!([]), both),
                _ => (both.clone(), both),
            };
            (
                json!({"Name": named("Tax Code", i), "Description": "Generated", "Taxable": true,
                "TaxGroup": true, "SalesTaxRateList": {"TaxRateDetail": sales},
                "PurchaseTaxRateList": {"TaxRateDetail": purchase}}),
                None,
            )
        }
        EntityType::TaxRate => (
            json!({"Name": named("Tax Rate", i), "Description": "Generated", "RateValue": i % 30,
            "AgencyRef": {"value": "1"}, "SpecialTaxType": "NONE", "DisplayType": "ReadOnly"}),
            None,
        ),
    }
}

/// Adds `n` generated entities of a type to a realm.
pub fn generate_qbo(realm: &mut Realm, et: EntityType, n: usize) {
    let name_field = et.name_field();
    let mut qualified: Vec<String> = Vec::with_capacity(n + 1);
    qualified.push(String::new());
    for i in 1..=n {
        let (Value::Object(mut item), parent) = qbo_generated(et, i) else {
            continue;
        };
        let active = !i.is_multiple_of(10);
        let own = item
            .get(name_field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let own = if active {
            own
        } else {
            format!("{own}{DELETED_SUFFIX}")
        };
        item.insert(name_field.into(), Value::from(own.clone()));
        let fqn = match parent {
            Some(p) if et.hierarchical() => {
                item.insert(
                    "ParentRef".into(),
                    json!({"value": (GEN_BASE + p).to_string()}),
                );
                if let Some(flag) = et.sub_flag() {
                    item.insert(flag.into(), Value::Bool(true));
                }
                if matches!(et, EntityType::Customer | EntityType::Item) {
                    item.insert("Level".into(), Value::from(1));
                }
                format!("{}:{own}", qualified[p])
            }
            _ => {
                if let Some(flag) = et.sub_flag() {
                    item.insert(flag.into(), Value::Bool(false));
                }
                own
            }
        };
        if et.hierarchical() {
            item.insert("FullyQualifiedName".into(), Value::from(fqn.clone()));
        }
        qualified.push(fqn);
        let at = format_time(
            GENERATED_EPOCH + i64::try_from(i - 1).unwrap_or(0),
            realm.tz,
        );
        item.insert("Id".into(), Value::from((GEN_BASE + i).to_string()));
        item.insert("SyncToken".into(), Value::from("0"));
        item.insert("Active".into(), Value::Bool(active));
        item.insert("domain".into(), Value::from("QBO"));
        item.insert("sparse".into(), Value::Bool(false));
        item.insert(
            "MetaData".into(),
            json!({"CreateTime": at, "LastUpdatedTime": at}),
        );
        realm.load(et, item);
    }
}
