//! The `variety` seed: on top of the reference fixtures, the cases attribute-sync rules branch on.
//!
//! QBO (realm of the config), written through the realm's own rules (so `FullyQualifiedName`,
//! `Classification`, `(deleted)` names and `SyncToken`s are derived, not typed in), at
//! 2024-03-01T00:00:00Z:
//! - one Account of every AccountType (ids 200–214), `AcctNum`s including one with inner spaces
//!   (`"6 100"`, the incumbent collapses whitespace), a chain `Travel:Airfare:International`;
//! - Items of every type (ids 100–106): Service, NonInventory, Inventory, Group, Category (which
//!   the sync must skip) with a sub-item `Hardware:Hammers`, and an inactive item;
//! - Classes `East:Boston:Back Bay`, `West`; Departments `Operations:Warehouse`;
//! - TaxRates 10–14 (one inactive) and TaxCodes 10–14: two rates on both sides, sales-only,
//!   purchase-only, one whose only rate is inactive, one inactive code;
//! - one inactive entity of every kind (account 88 of the fixtures included).
//!
//! Fyle (org of the config): a disabled and a not-yet-accepted employee, cards numbered
//! `xxxx-4543`, `4111`, `**** **** **** 1234`, `XXXXXXXXXXXX5678` (one with a nickname),
//! dependent values under two projects (one disabled), twelve merchants including non-ASCII
//! names, a disabled category, a custom SELECT field `Region` with 5,000 options and a disabled
//! custom field.
//!
//! A second org, [`OTHER_ORG_ID`], holds look-alike rows (same names, the same integer ids as
//! some of the first org's rows) so a test can prove nothing of it leaks into the first org's
//! lists, webhooks or token scope.

use serde_json::{Map, Value, json};

use super::complete;
use crate::{
    fyle::{list_filter::format_micros, org::FyleOrg, resources::Resource},
    qbo::{entity::EntityType, realm::Realm},
};

/// The second org of the `variety` seed.
pub const OTHER_ORG_ID: &str = "orTwo9Xk4Lm2";

/// 2024-03-01T00:00:00Z.
const VARIETY_EPOCH: i64 = 1_709_251_200;

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn qbo_create(realm: &mut Realm, et: EntityType, id: u64, v: Value) {
    if let Err(e) = realm.create_as(et, Some(id), &obj(v), VARIETY_EPOCH) {
        tracing::warn!(entity = et.name(), id, error = ?e, "variety seed row refused");
    }
}

fn qbo_deactivate(realm: &mut Realm, et: EntityType, id: u64) {
    let _ = realm.patch(et, id, &obj(json!({"Active": false})), VARIETY_EPOCH + 60);
}

/// Loads the QBO variety into a realm (after the demo fixtures).
pub fn load_variety_qbo(realm: &mut Realm) {
    use EntityType::{
        Account, Class, Customer, Department, Employee, Item, TaxCode, TaxRate, Vendor,
    };
    let accounts: [(u64, &str, &str, &str, Option<&str>); 15] = [
        (200, "Bank Checking", "Bank", "Checking", Some("1000")),
        (
            201,
            "Prepaid Expenses",
            "Other Current Asset",
            "PrepaidExpenses",
            Some("1300"),
        ),
        (202, "Vehicles", "Fixed Asset", "Vehicles", Some("1500")),
        (
            203,
            "Security Deposits",
            "Other Asset",
            "SecurityDeposits",
            None,
        ),
        (
            204,
            "Receivables",
            "Accounts Receivable",
            "AccountsReceivable",
            Some("1200"),
        ),
        (
            205,
            "Owner's Equity",
            "Equity",
            "OwnersEquity",
            Some("3000"),
        ),
        (
            206,
            "Office Expenses",
            "Expense",
            "OfficeGeneralAdministrativeExpenses",
            Some("6 100"),
        ),
        (
            207,
            "Penalties",
            "Other Expense",
            "PenaltiesSettlements",
            Some("8000"),
        ),
        (
            208,
            "Materials",
            "Cost of Goods Sold",
            "SuppliesMaterialsCogs",
            Some("5000"),
        ),
        (
            209,
            "Payables",
            "Accounts Payable",
            "AccountsPayable",
            Some("2000"),
        ),
        (210, "Amex", "Credit Card", "CreditCard", None),
        (
            211,
            "Bank Loan",
            "Long Term Liability",
            "NotesPayable",
            Some("2700"),
        ),
        (
            212,
            "Payroll Liabilities",
            "Other Current Liability",
            "PayrollTaxPayable",
            Some("2100"),
        ),
        (213, "Sales", "Income", "SalesOfProductIncome", Some("4000")),
        (
            214,
            "Interest Earned",
            "Other Income",
            "InterestEarned",
            Some("7000"),
        ),
    ];
    for (id, name, t, sub, num) in accounts {
        let mut a = json!({"Name": name, "AccountType": t, "AccountSubType": sub});
        if let Some(n) = num {
            a["AcctNum"] = Value::from(n);
        }
        qbo_create(realm, Account, id, a);
    }
    qbo_create(
        realm,
        Account,
        220,
        json!({"Name": "Travel", "AccountType": "Expense", "AcctNum": "6200"}),
    );
    qbo_create(
        realm,
        Account,
        221,
        json!({"Name": "Airfare", "AccountType": "Expense", "ParentRef": {"value": "220"}}),
    );
    qbo_create(
        realm,
        Account,
        222,
        json!({"Name": "International", "AccountType": "Expense", "ParentRef": {"value": "221"}}),
    );

    let income = json!({"value": "213", "name": "Sales"});
    qbo_create(
        realm,
        Item,
        100,
        json!({"Name": "Consulting", "Type": "Service", "IncomeAccountRef": income}),
    );
    qbo_create(
        realm,
        Item,
        101,
        json!({"Name": "Office Chairs", "Type": "NonInventory", "IncomeAccountRef": income,
        "ExpenseAccountRef": {"value": "208"}}),
    );
    qbo_create(
        realm,
        Item,
        102,
        json!({"Name": "Widgets", "Type": "Inventory", "IncomeAccountRef": income,
        "ExpenseAccountRef": {"value": "208"}, "AssetAccountRef": {"value": "201"}, "TrackQtyOnHand": true,
        "QtyOnHand": 25, "InvStartDate": "2024-01-01"}),
    );
    qbo_create(
        realm,
        Item,
        103,
        json!({"Name": "Starter Kit", "Type": "Group"}),
    );
    qbo_create(
        realm,
        Item,
        104,
        json!({"Name": "Hardware", "Type": "Category"}),
    );
    qbo_create(
        realm,
        Item,
        105,
        json!({"Name": "Hammers", "Type": "NonInventory", "IncomeAccountRef": income,
        "ParentRef": {"value": "104"}}),
    );
    qbo_create(
        realm,
        Item,
        106,
        json!({"Name": "Discontinued", "Type": "Service", "IncomeAccountRef": income}),
    );
    qbo_deactivate(realm, Item, 106);

    qbo_create(realm, Class, 300, json!({"Name": "East"}));
    qbo_create(
        realm,
        Class,
        301,
        json!({"Name": "Boston", "ParentRef": {"value": "300"}}),
    );
    qbo_create(
        realm,
        Class,
        302,
        json!({"Name": "Back Bay", "ParentRef": {"value": "301"}}),
    );
    qbo_create(realm, Class, 303, json!({"Name": "West"}));
    qbo_create(realm, Class, 304, json!({"Name": "Closed Region"}));
    qbo_deactivate(realm, Class, 304);
    qbo_create(realm, Department, 310, json!({"Name": "Operations"}));
    qbo_create(
        realm,
        Department,
        311,
        json!({"Name": "Warehouse", "ParentRef": {"value": "310"}}),
    );
    qbo_create(realm, Department, 312, json!({"Name": "Old Office"}));
    qbo_deactivate(realm, Department, 312);

    qbo_create(
        realm,
        Customer,
        70,
        json!({"DisplayName": "Warehouse Refit", "ParentRef": {"value": "7"}}),
    );
    qbo_create(realm, Customer, 71, json!({"DisplayName": "Gone Customer"}));
    qbo_deactivate(realm, Customer, 71);
    qbo_create(realm, Vendor, 40, json!({"DisplayName": "Old Supplier"}));
    qbo_deactivate(realm, Vendor, 40);
    qbo_create(
        realm,
        Employee,
        64,
        json!({"DisplayName": "Former Employee", "GivenName": "Former"}),
    );
    qbo_deactivate(realm, Employee, 64);

    for (id, name, rate) in [
        (10, "GST", 10),
        (11, "PST", 7),
        (12, "Sales only", 5),
        (13, "Purchase only", 8),
        (14, "Old rate", 3),
    ] {
        qbo_create(
            realm,
            TaxRate,
            id,
            json!({"Name": name, "Description": name, "RateValue": rate,
            "AgencyRef": {"value": "1"}}),
        );
    }
    qbo_deactivate(realm, TaxRate, 14);
    let detail = |id: u64, name: &str| json!({"TaxRateRef": {"value": id.to_string(), "name": name}, "TaxTypeApplicable": "TaxOnAmount", "TaxOrder": 0});
    let codes = [
        (
            10,
            "GST+PST",
            json!([detail(10, "GST"), detail(11, "PST")]),
            json!([detail(10, "GST"), detail(11, "PST")]),
        ),
        (
            11,
            "Sales Only",
            json!([detail(12, "Sales only")]),
            json!([]),
        ),
        (
            12,
            "Purchase Only",
            json!([]),
            json!([detail(13, "Purchase only")]),
        ),
        (
            13,
            "Uses Old Rate",
            json!([]),
            json!([detail(14, "Old rate")]),
        ),
        (
            14,
            "Retired",
            json!([detail(10, "GST")]),
            json!([detail(10, "GST")]),
        ),
    ];
    for (id, name, sales, purchase) in codes {
        qbo_create(
            realm,
            TaxCode,
            id,
            json!({"Name": name, "Description": name, "TaxGroup": true,
            "SalesTaxRateList": {"TaxRateDetail": sales}, "PurchaseTaxRateList": {"TaxRateDetail": purchase}}),
        );
    }
    qbo_deactivate(realm, TaxCode, 14);
}

fn fyle_load(org: &mut FyleOrg, r: Resource, v: Value) {
    let stamp = format_micros(VARIETY_EPOCH * 1_000_000);
    let mut item = obj(v);
    item.entry("created_at")
        .or_insert_with(|| Value::from(stamp.clone()));
    item.entry("updated_at")
        .or_insert_with(|| Value::from(stamp));
    let org_id = org.id().to_owned();
    if let Some(row) = complete(r, &item, &org_id) {
        org.load(r, row);
    }
}

fn user(id: &str, email: &str, name: &str) -> Value {
    json!({"id": id, "email": email, "full_name": name})
}

/// Loads the Fyle variety into an org (after the demo fixtures).
pub fn load_variety_fyle(org: &mut FyleOrg) {
    use Resource::{Categories, CorporateCards, DependentValues, Employees, ExpenseFields};
    fyle_load(
        org,
        Employees,
        json!({"id": "ouDisabled001", "user_id": "usDisabled01",
        "user": user("usDisabled01", "left.company@example.com", "Lee Left"), "code": "E90001",
        "is_enabled": false, "has_accepted_invite": true}),
    );
    fyle_load(
        org,
        Employees,
        json!({"id": "ouInvited0001", "user_id": "usInvited001",
        "user": user("usInvited001", "new.hire@example.com", "Nia New"), "code": "E90002",
        "is_enabled": true, "has_accepted_invite": false}),
    );
    let cards = [
        ("baVariety0001", "xxxx-4543", None),
        ("baVariety0002", "4111", Some("Travel card")),
        ("baVariety0003", "**** **** **** 1234", None),
        ("baVariety0004", "XXXXXXXXXXXX5678", None),
    ];
    for (id, number, nickname) in cards {
        fyle_load(
            org,
            CorporateCards,
            json!({"id": id, "bank_name": "Chase", "card_number": number,
            "nickname": nickname, "cardholder_name": "Joanna", "user_id": "usqywo0f3nBY"}),
        );
    }
    let values = [
        (88002, "Freeman Sporting Goods", "CC-200", true),
        (
            88003,
            "Freeman Sporting Goods:0969 Ocean View Road",
            "CC-300",
            true,
        ),
        (88004, "Freeman Sporting Goods", "CC-999", false),
    ];
    for (id, parent, value, enabled) in values {
        fyle_load(
            org,
            DependentValues,
            json!({"id": id, "parent_expense_field_id": 203020,
            "expense_field_id": 229510, "parent_expense_field_value": parent,
            "expense_field_value": value, "is_enabled": enabled}),
        );
    }
    if let Some(mut merchant) = org.merchant_field().map(|f| f.json.clone()) {
        let more = [
            "Uber",
            "Lyft",
            "Delta Air Lines",
            "Café Ünïcode",
            "東京 Sushi",
            "AT&T",
            "O'Reilly Media",
            "Books by Bessie",
            "Amazon",
            "Starbucks",
            "Hilton",
            "Marriott",
        ];
        let mut options: Vec<Value> = merchant
            .get("options")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for m in more {
            if !options.iter().any(|o| o.as_str() == Some(m)) {
                options.push(Value::from(m));
            }
        }
        merchant.insert("options".into(), Value::Array(options));
        org.load(ExpenseFields, merchant);
    }
    fyle_load(
        org,
        Categories,
        json!({"id": 22330030, "name": "Meals", "code": "60", "is_enabled": false}),
    );
    let regions: Vec<String> = (1..=5000).map(|i| format!("Region {i:04}")).collect();
    fyle_load(
        org,
        ExpenseFields,
        json!({"id": 229520, "field_name": "Region", "column_name": "text_column6",
        "type": "SELECT", "options": regions, "is_enabled": true, "is_mandatory": false, "is_custom": true,
        "placeholder": "Select Region", "category_ids": [259385]}),
    );
    fyle_load(
        org,
        ExpenseFields,
        json!({"id": 229521, "field_name": "Old Field", "column_name": "text_column7",
        "type": "SELECT", "options": ["A", "B"], "is_enabled": false, "is_mandatory": false, "is_custom": true}),
    );
}

/// Loads the second org's look-alike rows.
pub fn load_other_org(org: &mut FyleOrg) {
    use Resource::{Categories, CostCenters, Employees, Projects};
    fyle_load(
        org,
        Categories,
        json!({"id": 22330021, "name": "Travel", "sub_category": "Flight", "code": "55"}),
    );
    fyle_load(
        org,
        Categories,
        json!({"id": 900001, "name": "Other Org Only", "code": "X1"}),
    );
    fyle_load(
        org,
        Projects,
        json!({"id": 300177, "name": "Freeman Sporting Goods", "code": "7"}),
    );
    fyle_load(
        org,
        CostCenters,
        json!({"id": 9587, "name": "01: San Francisco"}),
    );
    fyle_load(
        org,
        Employees,
        json!({"id": "ouOtherOrg001", "user_id": "usOtherOrg01",
        "user": user("usOtherOrg01", "ashwin.t@fyle.in", "Joanna Elsewhere"), "code": "E84122"}),
    );
}
