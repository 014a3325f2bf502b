//! Derivation against fixtures in the shapes of reference §3.4 / §4.4.

use std::collections::HashMap;

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

use super::*;
use crate::rules::{NoTaxRates, display_name};

fn rules() -> WorkspaceRules {
    WorkspaceRules {
        import_items: true,
        ..WorkspaceRules::default()
    }
}

fn one(entity: &str, value: &Value) -> DestinationDraft {
    one_with(entity, value, &rules(), &NoTaxRates)
}

fn one_with(
    entity: &str,
    value: &Value,
    rules: &WorkspaceRules,
    rates: &dyn TaxRateLookup,
) -> DestinationDraft {
    match derive(entity, value, rules, rates) {
        Derived::Attributes(mut drafts) if drafts.len() == 1 => drafts.remove(0),
        other => panic!("expected one draft for {entity}, got {other:?}"),
    }
}

fn skipped(entity: &str, value: &Value) -> SkipReason {
    match derive(entity, value, &rules(), &NoTaxRates) {
        Derived::Skipped(reason) => reason,
        other => panic!("expected a skip for {entity}, got {other:?}"),
    }
}

fn account(account_type: &str) -> Value {
    json!({
        "Name": "Advertising", "SubAccount": false, "FullyQualifiedName": "Advertising",
        "Active": true, "Classification": "Expense", "AccountType": account_type,
        "AccountSubType": "AdvertisingPromotional", "AcctNum": "6010", "CurrentBalance": 0,
        "CurrentBalanceWithSubAccounts": 0,
        "CurrencyRef": {"value": "USD", "name": "United States Dollar"}, "domain": "QBO",
        "sparse": false, "Id": "7", "SyncToken": "0",
        "MetaData": {"CreateTime": "2018-10-31T05:05:10-07:00",
                     "LastUpdatedTime": "2018-10-31T05:05:10-07:00"}
    })
}

fn types(derived: &Derived) -> Vec<(AttributeType, &'static str)> {
    match derived {
        Derived::Attributes(drafts) => drafts
            .iter()
            .map(|d| (d.attribute_type, d.display_name))
            .collect(),
        Derived::Skipped(_) => Vec::new(),
    }
}

// ---- accounts ------------------------------------------------------------------------------

#[test]
fn an_expense_account_is_an_account_row_with_the_incumbents_shape() {
    let draft = one("Account", &account("Expense"));
    assert_eq!(draft.attribute_type, AttributeType::Account);
    assert_eq!(draft.display_name, "Account");
    assert_eq!(draft.destination_id, "7");
    assert_eq!(draft.value, "Advertising");
    assert_eq!(draft.code.as_deref(), Some("6010"));
    assert!(draft.active);
    assert_eq!(
        draft.detail,
        json!({"fully_qualified_name": "Advertising", "account_type": "Expense",
               "detail_type": "AdvertisingPromotional"})
    );
    assert_eq!(draft.sync_token.as_deref(), Some("0"));
    assert_eq!(
        draft.last_updated_time,
        Utc.with_ymd_and_hms(2018, 10, 31, 12, 5, 10).single()
    );
}

#[test]
fn every_account_type_lands_where_the_incumbent_puts_it() {
    use AttributeType::*;
    let cases: [(&str, &[(AttributeType, &str)]); 15] = [
        ("Expense", &[(Account, "Account")]),
        ("Other Expense", &[(Account, "Account")]),
        ("Fixed Asset", &[(Account, "Account")]),
        ("Cost of Goods Sold", &[(Account, "Account")]),
        ("Current Liability", &[(Account, "Account")]),
        ("Equity", &[(Account, "Account")]),
        ("Other Current Asset", &[(Account, "Account")]),
        ("Long Term Liability", &[(Account, "Account")]),
        ("Current Asset", &[(Account, "Account")]),
        ("Income", &[(Account, "Account")]),
        ("Other Income", &[(Account, "Account")]),
        ("Other Asset", &[(Account, "Account")]),
        ("Credit Card", &[(CreditCardAccount, "Credit Card Account")]),
        ("Bank", &[(BankAccount, "Bank Account")]),
        ("Accounts Payable", &[(AccountsPayable, "Accounts Payable")]),
    ];
    for (account_type, expected) in cases {
        let derived = derive("Account", &account(account_type), &rules(), &NoTaxRates);
        assert_eq!(types(&derived), expected, "{account_type}");
    }
}

#[test]
fn other_current_liability_is_both_an_account_and_a_bank_account() {
    let derived = derive(
        "Account",
        &account("Other Current Liability"),
        &rules(),
        &NoTaxRates,
    );
    let drafts = derived.into_drafts();
    assert_eq!(drafts.len(), 2);
    assert_eq!(drafts[0].attribute_type, AttributeType::Account);
    assert_eq!(drafts[1].attribute_type, AttributeType::BankAccount);
    assert!(drafts.iter().all(|d| d.destination_id == "7"));
    assert_eq!(
        drafts[1].detail,
        json!({"fully_qualified_name": "Advertising", "account_type": "Other Current Liability"})
    );
}

#[test]
fn charts_of_accounts_decides_the_account_rows() {
    let only_expense = WorkspaceRules {
        charts_of_accounts: vec!["Expense".into()],
        ..rules()
    };
    let derived = derive("Account", &account("Income"), &only_expense, &NoTaxRates);
    assert_eq!(derived, Derived::Skipped(SkipReason::NotImportedType));
    let derived = derive(
        "Account",
        &account("Other Current Liability"),
        &only_expense,
        &NoTaxRates,
    );
    assert_eq!(
        types(&derived),
        [(AttributeType::BankAccount, "Bank Account")],
        "still a bank account when not a chart type"
    );
}

#[test]
fn accounts_receivable_is_not_imported() {
    assert_eq!(
        skipped("Account", &account("Accounts Receivable")),
        SkipReason::NotImportedType
    );
}

#[test]
fn sub_accounts_use_the_full_path_in_v2_and_the_leaf_in_v1() {
    let fuel = json!({"Name": "Fuel", "SubAccount": true, "ParentRef": {"value": "55"},
        "FullyQualifiedName": "Automobile:Fuel", "Active": true, "AccountType": "Expense",
        "AccountSubType": "Auto", "Id": "56", "SyncToken": "0"});
    let v2 = one("Account", &fuel);
    assert_eq!(v2.value, "Automobile:Fuel");
    let v1_rules = WorkspaceRules {
        category_sync_version: CategorySyncVersion::V1,
        ..rules()
    };
    let v1 = one_with("Account", &fuel, &v1_rules, &NoTaxRates);
    assert_eq!(v1.value, "Fuel");
    assert_eq!(
        v1.detail["fully_qualified_name"], "Automobile:Fuel",
        "the detail keeps the path either way"
    );
    assert_eq!(v1.code, None, "no AcctNum, no code");
}

#[test]
fn account_codes_collapse_whitespace_and_blank_codes_are_none() {
    let mut spaced = account("Expense");
    spaced["AcctNum"] = json!("  60\t 10 ");
    assert_eq!(one("Account", &spaced).code.as_deref(), Some("60 10"));
    spaced["AcctNum"] = json!("   ");
    assert_eq!(one("Account", &spaced).code, None);
}

#[test]
fn card_bank_and_payable_rows_carry_the_code_too() {
    let card = one("Account", &account("Credit Card"));
    assert_eq!(card.code.as_deref(), Some("6010"));
    assert_eq!(
        card.detail,
        json!({"fully_qualified_name": "Advertising", "account_type": "Credit Card"})
    );
}

#[test]
fn an_inactive_account_is_stripped_of_deleted_and_keeps_its_type_and_detail() {
    let old_travel = json!({"Name": "Old Travel (deleted)", "SubAccount": false,
        "FullyQualifiedName": "Old Travel (deleted)", "Active": false,
        "Classification": "Expense", "AccountType": "Expense", "AccountSubType": "Travel",
        "Id": "88", "SyncToken": "2",
        "MetaData": {"LastUpdatedTime": "2024-05-01T08:00:00-07:00"}});
    let draft = one("Account", &old_travel);
    assert_eq!(draft.value, "Old Travel");
    assert!(
        !draft.active,
        "QBO's Active, not the incumbent's hard-coded true"
    );
    assert_eq!(
        draft.detail,
        json!({"fully_qualified_name": "Old Travel", "account_type": "Expense",
               "detail_type": "Travel"})
    );

    let mut card = account("Credit Card");
    card["Active"] = json!(false);
    card["Name"] = json!("Mastercard (deleted)");
    card["FullyQualifiedName"] = json!("Mastercard (deleted)");
    let draft = one("Account", &card);
    assert_eq!(draft.attribute_type, AttributeType::CreditCardAccount);
    assert_eq!(draft.value, "Mastercard");
    assert!(!draft.active);
}

#[test]
fn an_inactive_sub_account_loses_the_marker_on_every_level() {
    let fuel = json!({"Name": "Fuel (deleted)", "FullyQualifiedName": "Automobile:Fuel (deleted)",
        "Active": false, "AccountType": "Expense", "Id": "56"});
    assert_eq!(one("Account", &fuel).value, "Automobile:Fuel");
}

#[test]
fn an_account_without_a_type_or_name_is_malformed() {
    let mut no_type = account("Expense");
    no_type.as_object_mut().map(|o| o.remove("AccountType"));
    assert_eq!(
        skipped("Account", &no_type),
        SkipReason::Malformed {
            field: "AccountType"
        }
    );
    let mut no_names = account("Expense");
    if let Some(o) = no_names.as_object_mut() {
        o.remove("Name");
        o.remove("FullyQualifiedName");
    }
    assert_eq!(
        skipped("Account", &no_names),
        SkipReason::Malformed {
            field: "FullyQualifiedName"
        }
    );
    let mut bad_active = account("Expense");
    bad_active["Active"] = json!("yes");
    assert_eq!(
        skipped("Account", &bad_active),
        SkipReason::Malformed { field: "Active" }
    );
}

#[test]
fn a_blank_account_name_is_skipped() {
    let mut blank = account("Expense");
    blank["FullyQualifiedName"] = json!("   ");
    assert_eq!(skipped("Account", &blank), SkipReason::BlankValue);
}

// ---- items ---------------------------------------------------------------------------------

fn item(item_type: &str) -> Value {
    json!({"Name": "Concrete", "Description": "Concrete for fountain installation",
        "Active": true, "FullyQualifiedName": "Concrete", "Taxable": true, "UnitPrice": 0,
        "Type": item_type, "IncomeAccountRef": {"value": "48", "name": "Fountains"},
        "PurchaseCost": 0, "TrackQtyOnHand": false, "domain": "QBO", "sparse": false,
        "Id": "3", "SyncToken": "1",
        "MetaData": {"CreateTime": "2019-12-16T10:36:03-08:00",
                     "LastUpdatedTime": "2019-12-19T12:47:47-08:00"}})
}

#[test]
fn every_item_type_but_category_is_an_item_row() {
    for item_type in ["Service", "Inventory", "NonInventory", "Group"] {
        let draft = one("Item", &item(item_type));
        assert_eq!(
            (draft.attribute_type, draft.display_name),
            (AttributeType::Account, "Item"),
            "{item_type}"
        );
        assert_eq!(draft.value, "Concrete");
        assert_eq!(draft.detail, Value::Null);
        assert_eq!(draft.code, None);
    }
    assert_eq!(skipped("Item", &item("Category")), SkipReason::ItemCategory);
}

#[test]
fn items_are_skipped_while_import_items_is_off() {
    let off = WorkspaceRules {
        import_items: false,
        ..rules()
    };
    assert_eq!(
        derive("Item", &item("Service"), &off, &NoTaxRates),
        Derived::Skipped(SkipReason::NotImportedType)
    );
}

#[test]
fn sub_items_use_the_full_path_and_inactive_items_lose_the_marker() {
    let mut sub = item("NonInventory");
    sub["Name"] = json!("Rock (deleted)");
    sub["FullyQualifiedName"] = json!("Landscaping:Rock (deleted)");
    sub["Active"] = json!(false);
    let draft = one("Item", &sub);
    assert_eq!(draft.value, "Landscaping:Rock");
    assert!(!draft.active);
}

// ---- name lists ----------------------------------------------------------------------------

#[test]
fn vendors_are_display_names_with_email_and_currency() {
    let bessie = json!({"PrimaryEmailAddr": {"Address": "Books@Intuit.com"}, "Vendor1099": false,
        "domain": "QBO", "GivenName": "Bessie", "FamilyName": "Williams",
        "DisplayName": "Books by Bessie", "CompanyName": "Books by Bessie",
        "PrintOnCheckName": "Books by Bessie", "AcctNum": "1345",
        "CurrencyRef": {"value": "USD", "name": "United States Dollar"}, "Balance": 0,
        "Active": true, "sparse": false, "Id": "30", "SyncToken": "0",
        "MetaData": {"CreateTime": "2014-09-12T10:07:56-07:00",
                     "LastUpdatedTime": "2014-09-17T11:13:46-07:00"}});
    let draft = one("Vendor", &bessie);
    assert_eq!(draft.attribute_type, AttributeType::Vendor);
    assert_eq!(draft.display_name, "vendor");
    assert_eq!(draft.value, "Books by Bessie");
    assert_eq!(draft.code, None, "a vendor's AcctNum is not a code");
    assert_eq!(
        draft.detail,
        json!({"email": "Books@Intuit.com", "currency": "USD"})
    );
}

#[test]
fn a_vendor_without_email_or_currency_has_nulls() {
    let plain = json!({"DisplayName": "Cash", "Active": true, "Id": "31",
        "PrimaryEmailAddr": {"Address": "  "}});
    assert_eq!(
        one("Vendor", &plain).detail,
        json!({"email": null, "currency": null})
    );
}

#[test]
fn quotes_and_unicode_in_names_are_kept_verbatim() {
    let vendor = json!({"DisplayName": "O'Brien \"Bob\" Café 東京", "Active": true, "Id": "32"});
    assert_eq!(one("Vendor", &vendor).value, "O'Brien \"Bob\" Café 東京");
}

fn sub_customer(active: bool) -> Value {
    let suffix = if active { "" } else { " (deleted)" };
    json!({"Id": "8", "SyncToken": "2", "DisplayName": format!("0969 Ocean View Road{suffix}"),
        "FullyQualifiedName": format!("Freeman Sporting Goods:0969 Ocean View Road{suffix}"),
        "Job": true, "ParentRef": {"value": "7"}, "Level": 1, "BillWithParent": true,
        "GivenName": "Sasha", "FamilyName": "Tillou", "CompanyName": "Freeman Sporting Goods",
        "PrimaryEmailAddr": {"Address": "Sporting_goods@intuit.com"}, "Balance": 0,
        "CurrencyRef": {"value": "USD", "name": "United States Dollar"}, "Active": active,
        "domain": "QBO", "sparse": false,
        "MetaData": {"CreateTime": "2014-12-22T17:00:01-08:00",
                     "LastUpdatedTime": "2015-06-18T13:06:34-07:00"}})
}

#[test]
fn customers_have_one_naming_rule_for_active_and_inactive() {
    let active = one("Customer", &sub_customer(true));
    let inactive = one("Customer", &sub_customer(false));
    assert_eq!(active.value, "Freeman Sporting Goods:0969 Ocean View Road");
    assert_eq!(
        inactive.value, active.value,
        "deactivation must not rename (the incumbent switches to DisplayName)"
    );
    assert!(!inactive.active);
    assert_eq!(active.display_name, "customer");
    assert_eq!(active.detail, Value::Null);
}

#[test]
fn a_customer_without_a_full_name_falls_back_to_its_display_name() {
    let bare = json!({"Id": "9", "DisplayName": "Amy's Bird Sanctuary", "Active": true});
    assert_eq!(one("Customer", &bare).value, "Amy's Bird Sanctuary");
}

#[test]
fn classes_and_departments_use_full_paths() {
    let class = json!({"Name": "Shoes", "SubClass": true,
        "ParentRef": {"value": "5000000000000085682"},
        "FullyQualifiedName": "Adidas:Shoes", "Active": true, "domain": "QBO", "sparse": false,
        "Id": "5000000000000085683", "SyncToken": "0"});
    let draft = one("Class", &class);
    assert_eq!(
        (draft.attribute_type, draft.display_name),
        (AttributeType::Class, "class")
    );
    assert_eq!(draft.value, "Adidas:Shoes");
    assert_eq!(draft.destination_id, "5000000000000085683");

    let department = json!({"Name": "Marketing Department", "SubDepartment": false,
        "FullyQualifiedName": "Marketing Department", "Active": false, "domain": "QBO",
        "sparse": false, "Id": "2", "SyncToken": "0"});
    let draft = one("Department", &department);
    assert_eq!(
        (draft.attribute_type, draft.display_name),
        (AttributeType::Department, "Department")
    );
    assert!(!draft.active);
}

#[test]
fn employees_are_display_names_with_email_and_qbos_active() {
    let jamine = json!({"BillableTime": false, "BillRate": 0, "domain": "QBO", "sparse": false,
        "Id": "63", "SyncToken": "2", "GivenName": "Jamine", "DisplayName": "Jamine",
        "PrintOnCheckName": "Jamine", "Active": true,
        "PrimaryEmailAddr": {"Address": "jasmine@fyle.in"}});
    let draft = one("Employee", &jamine);
    assert_eq!(
        (draft.attribute_type, draft.display_name),
        (AttributeType::Employee, "employee")
    );
    assert_eq!(draft.detail, json!({"email": "jasmine@fyle.in"}));

    let mut gone = jamine.clone();
    gone["Active"] = json!(false);
    gone["DisplayName"] = json!("Jamine (deleted)");
    let draft = one("Employee", &gone);
    assert_eq!(draft.value, "Jamine");
    assert!(!draft.active, "the incumbent hard-codes true here");
}

#[test]
fn entity_names_are_case_insensitive_and_unknown_ones_are_skipped() {
    assert_eq!(
        one("vendor", &json!({"DisplayName": "X", "Id": "1"})).value,
        "X"
    );
    for name in ["TaxRate", "Bill", "Invoice", ""] {
        assert_eq!(
            derive(name, &json!({"Id": "1"}), &rules(), &NoTaxRates),
            Derived::Skipped(SkipReason::UnknownEntity),
            "{name}"
        );
    }
}

#[test]
fn an_entity_without_an_id_or_not_an_object_is_malformed() {
    assert_eq!(
        skipped("Vendor", &json!({"DisplayName": "X"})),
        SkipReason::Malformed { field: "Id" }
    );
    assert_eq!(
        skipped("Vendor", &json!(["DisplayName"])),
        SkipReason::Malformed { field: "<entity>" }
    );
}

#[test]
fn cdc_tombstones_are_deletions() {
    let tombstone = json!({"domain": "QBO", "status": "Deleted", "Id": "41",
        "MetaData": {"LastUpdatedTime": "2024-05-01T11:00:00-07:00"}});
    assert_eq!(skipped("Vendor", &tombstone), SkipReason::DeletedInQbo);
}

#[test]
fn long_values_are_kept_whole() {
    // Five levels of 100-character names, as QBO allows.
    let long = vec!["N".repeat(100); 5].join(":");
    let class = json!({"Id": "3", "FullyQualifiedName": long, "Active": true});
    let draft = one("Class", &class);
    assert_eq!(draft.value, long);
    assert_eq!(draft.value.chars().count(), 504);
    assert!(!draft.fits_fyle_name());
}

// ---- tax codes -----------------------------------------------------------------------------

fn tax_code(name: &str, active: bool, purchase: &[(&str, &str)]) -> Value {
    let details: Vec<Value> = purchase
        .iter()
        .enumerate()
        .map(|(order, (id, rate_name))| {
            json!({"TaxRateRef": {"value": id, "name": rate_name},
                   "TaxTypeApplicable": "TaxOnAmount", "TaxOrder": order})
        })
        .collect();
    json!({"Id": "2", "SyncToken": "0", "domain": "QBO", "sparse": false, "Name": name,
        "Description": name, "Active": active, "Taxable": true, "TaxGroup": true,
        "SalesTaxRateList": {"TaxRateDetail": [{"TaxRateRef": {"value": "3", "name": "California"},
                             "TaxTypeApplicable": "TaxOnAmount", "TaxOrder": 0}]},
        "PurchaseTaxRateList": {"TaxRateDetail": details},
        "MetaData": {"CreateTime": "2014-09-18T12:17:04-07:00",
                     "LastUpdatedTime": "2014-09-18T12:17:04-07:00"}})
}

fn rates(pairs: &[(&str, f64)]) -> HashMap<String, f64> {
    pairs.iter().map(|(id, r)| ((*id).to_owned(), *r)).collect()
}

#[test]
fn a_single_rate_tax_code_matches_the_reference_example() {
    let code = tax_code("California", true, &[("6", "ON TAX PURCHASE")]);
    let draft = one_with("TaxCode", &code, &rules(), &rates(&[("6", 13.0)]));
    assert_eq!(draft.value, "California @13%");
    assert_eq!(
        (draft.attribute_type, draft.display_name),
        (AttributeType::TaxCode, "Tax Code")
    );
    assert_eq!(
        draft.detail,
        json!({"tax_rate": 13,
               "tax_refs": [{"value": "6", "name": "ON TAX PURCHASE", "taxRate": 13}]})
    );
}

#[test]
fn a_multi_rate_tax_code_sums_its_purchase_rates() {
    let code = tax_code("GST/QST", true, &[("4", "GST"), ("12", "QST")]);
    let draft = one_with(
        "TaxCode",
        &code,
        &rules(),
        &rates(&[("4", 5.0), ("12", 9.975), ("3", 99.0)]),
    );
    assert_eq!(
        draft.value, "GST/QST @14.975%",
        "sales rate 3 is not counted"
    );
    assert_eq!(draft.detail["tax_rate"], json!(14.975));
    assert_eq!(
        draft.detail["tax_refs"],
        json!([{"value": "4", "name": "GST", "taxRate": 5},
               {"value": "12", "name": "QST", "taxRate": 9.975}])
    );
}

#[test]
fn rates_print_without_float_noise() {
    let code = tax_code("Levies", true, &[("1", "A"), ("2", "B")]);
    let draft = one_with(
        "TaxCode",
        &code,
        &rules(),
        &rates(&[("1", 0.1), ("2", 0.2)]),
    );
    assert_eq!(draft.value, "Levies @0.3%");
    let code = tax_code("Half", true, &[("1", "A"), ("2", "B")]);
    let draft = one_with(
        "TaxCode",
        &code,
        &rules(),
        &rates(&[("1", 2.5), ("2", 5.0)]),
    );
    assert_eq!(draft.value, "Half @7.5%");
    let code = tax_code("Ten", true, &[("1", "A")]);
    let draft = one_with("TaxCode", &code, &rules(), &rates(&[("1", 10.0)]));
    assert_eq!(draft.value, "Ten @10%");
}

#[test]
fn an_inactive_tax_code_is_named_without_the_marker() {
    let code = tax_code("Old GST (deleted)", false, &[("4", "GST")]);
    let draft = one_with("TaxCode", &code, &rules(), &rates(&[("4", 5.0)]));
    assert_eq!(draft.value, "Old GST @5%");
    assert!(!draft.active);
}

#[test]
fn tax_codes_without_purchase_rates_are_skipped() {
    let sales_only = tax_code("TAX", true, &[]);
    assert_eq!(
        skipped("TaxCode", &sales_only),
        SkipReason::NoPurchaseTaxRates
    );
    let no_list = json!({"Id": "NON", "Name": "NON", "Active": true});
    assert_eq!(skipped("TaxCode", &no_list), SkipReason::NoPurchaseTaxRates);
}

#[test]
fn a_rate_the_lookup_lacks_skips_the_code_without_retiring_it() {
    let code = tax_code("GST/QST", true, &[("4", "GST"), ("12", "QST")]);
    let derived = derive("TaxCode", &code, &rules(), &rates(&[("4", 5.0)]));
    let reason = SkipReason::MissingTaxRate {
        tax_rate_id: "12".into(),
    };
    assert_eq!(derived, Derived::Skipped(reason.clone()));
    assert!(!reason.retires_existing());
    assert!(retired_slots(SyncEntity::TaxCode, &derived).is_empty());
}

#[test]
fn a_non_finite_rate_is_malformed() {
    let code = tax_code("Bad", true, &[("1", "A")]);
    let derived = derive("TaxCode", &code, &rules(), &rates(&[("1", f64::NAN)]));
    assert_eq!(
        derived,
        Derived::Skipped(SkipReason::Malformed {
            field: "TaxRate.RateValue"
        })
    );
}

// ---- retiring rows -------------------------------------------------------------------------

#[test]
fn an_account_whose_type_moved_retires_its_other_rows() {
    let derived = derive("Account", &account("Credit Card"), &rules(), &NoTaxRates);
    let retired: Vec<AttributeType> = retired_slots(SyncEntity::Account, &derived)
        .into_iter()
        .map(|s| s.attribute_type)
        .collect();
    assert_eq!(
        retired,
        [
            AttributeType::Account,
            AttributeType::BankAccount,
            AttributeType::AccountsPayable
        ]
    );
    let both = derive(
        "Account",
        &account("Other Current Liability"),
        &rules(),
        &NoTaxRates,
    );
    let retired: Vec<AttributeType> = retired_slots(SyncEntity::Account, &both)
        .into_iter()
        .map(|s| s.attribute_type)
        .collect();
    assert_eq!(
        retired,
        [
            AttributeType::CreditCardAccount,
            AttributeType::AccountsPayable
        ]
    );
}

#[test]
fn skips_retire_rows_only_when_the_entity_no_longer_belongs() {
    let items_off = WorkspaceRules {
        import_items: false,
        ..rules()
    };
    let derived = derive("Item", &item("Service"), &items_off, &NoTaxRates);
    assert_eq!(
        retired_slots(SyncEntity::Item, &derived),
        [Slot {
            attribute_type: AttributeType::Account,
            display_name: display_name::ITEM
        }],
        "turning import_items off retires items (#59)"
    );
    let mut blank = account("Expense");
    blank["FullyQualifiedName"] = json!("");
    let derived = derive("Account", &blank, &rules(), &NoTaxRates);
    assert!(retired_slots(SyncEntity::Account, &derived).is_empty());
    let tombstone = json!({"status": "Deleted", "Id": "41"});
    let derived = derive("Customer", &tombstone, &rules(), &NoTaxRates);
    assert_eq!(retired_slots(SyncEntity::Customer, &derived).len(), 1);
}
