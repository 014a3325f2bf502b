//! The `variety` seed and the generator give sync rules something to decide on: every QBO
//! AccountType and Item type, hierarchies, one-sided and multi-rate tax codes, inactive entities of
//! each kind; Fyle employees who cannot be synced, card formats, dependent values, merchants, a
//! 5,000-option field — and a second org whose rows never leak.

use std::collections::BTreeSet;

use attrsync_sandbox::{OTHER_ORG_ID, SandboxConfig, Seed};
use serde_json::Value;

use crate::common::{Fyle, ORG, Qbo, REALM, Receiver, config, start, start_with};

async fn variety() -> attrsync_sandbox::SandboxHandle {
    start_with(SandboxConfig {
        seed: Seed::Variety,
        fyle_rate_limit_per_second: None,
        ..config()
    })
    .await
}

async fn all(qbo: &Qbo, entity: &str, filter: &str) -> Vec<Value> {
    let (status, body) = qbo
        .query(&format!(
            "select * from {entity} where Active IN (true, false){filter} MAXRESULTS 1000"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    body["QueryResponse"][entity]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn strings(rows: &[Value], key: &str) -> BTreeSet<String> {
    rows.iter()
        .filter_map(|r| r[key].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qbo_variety_covers_every_type_hierarchy_and_inactive_kind() {
    let sb = variety().await;
    let qbo = Qbo::new(&sb);
    let accounts = all(&qbo, "Account", "").await;
    let types = strings(&accounts, "AccountType");
    for t in [
        "Expense",
        "Other Expense",
        "Cost of Goods Sold",
        "Fixed Asset",
        "Other Asset",
        "Other Current Asset",
        "Other Current Liability",
        "Long Term Liability",
        "Equity",
        "Income",
        "Other Income",
        "Credit Card",
        "Bank",
        "Accounts Payable",
        "Accounts Receivable",
    ] {
        assert!(types.contains(t), "AccountType {t} seeded");
    }
    let fqns = strings(&accounts, "FullyQualifiedName");
    assert!(fqns.contains("Travel:Airfare:International"), "{fqns:?}");
    assert!(strings(&accounts, "AcctNum").contains("6 100"));
    let liability = accounts
        .iter()
        .find(|a| a["Name"] == "Bank Loan")
        .expect("seeded");
    assert_eq!(liability["Classification"], "Liability");

    let items = all(&qbo, "Item", "").await;
    assert_eq!(
        strings(&items, "Type"),
        ["Category", "Group", "Inventory", "NonInventory", "Service"]
            .map(str::to_owned)
            .into(),
    );
    assert!(strings(&items, "FullyQualifiedName").contains("Hardware:Hammers"));
    assert!(
        strings(&all(&qbo, "Class", "").await, "FullyQualifiedName")
            .contains("East:Boston:Back Bay")
    );
    assert!(
        strings(&all(&qbo, "Department", "").await, "FullyQualifiedName")
            .contains("Operations:Warehouse")
    );

    let codes = all(&qbo, "TaxCode", "").await;
    let code = |name: &str| {
        codes
            .iter()
            .find(|c| c["Name"].as_str().is_some_and(|n| n.starts_with(name)))
            .cloned()
            .expect("code")
    };
    let details = |c: &Value, list: &str| c[list]["TaxRateDetail"].as_array().map_or(0, Vec::len);
    assert_eq!(
        details(&code("GST+PST"), "PurchaseTaxRateList"),
        2,
        "multi-rate"
    );
    assert_eq!(details(&code("Sales Only"), "PurchaseTaxRateList"), 0);
    assert_eq!(details(&code("Purchase Only"), "SalesTaxRateList"), 0);
    assert_eq!(code("Retired")["Active"], false);
    let (_, rate) = qbo.get("/taxrate/14").await;
    assert_eq!(
        rate["TaxRate"]["Active"], false,
        "an inactive rate a code refers to"
    );

    for entity in [
        "Account",
        "Item",
        "Class",
        "Department",
        "Customer",
        "Vendor",
        "Employee",
        "TaxCode",
        "TaxRate",
    ] {
        let (_, body) = qbo
            .query(&format!(
                "select count(*) from {entity} where Active = false"
            ))
            .await;
        let n = body["QueryResponse"]["totalCount"].as_u64().unwrap_or(0);
        assert!(n >= 1, "an inactive {entity}");
    }
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fyle_variety_has_unsyncable_employees_card_formats_dependents_merchants_and_big_fields() {
    let sb = variety().await;
    let fyle = Fyle::connect(&sb).await;
    let (every, _) = fyle
        .list_all("/admin/employees", &[("order", "updated_at.desc,id")], None)
        .await;
    assert_eq!(every, 3);
    let (syncable, _) = fyle
        .list_all(
            "/admin/employees",
            &[
                ("order", "updated_at.desc,id"),
                ("is_enabled", "eq.true"),
                ("has_accepted_invite", "eq.true"),
            ],
            None,
        )
        .await;
    assert_eq!(
        syncable, 1,
        "the disabled and the not-yet-accepted employee are filtered out"
    );

    let (_, cards) = fyle
        .list_all("/admin/corporate_cards", &[("order", "id")], None)
        .await;
    let numbers: BTreeSet<String> = strings(&cards, "card_number");
    for n in [
        "xxxx-xxxx-xxxx-8084",
        "xxxx-4543",
        "4111",
        "**** **** **** 1234",
        "XXXXXXXXXXXX5678",
    ] {
        assert!(numbers.contains(n), "{n}");
    }

    let deps = [
        ("expense_field_id", "eq.229510"),
        ("parent_expense_field_id", "eq.203020"),
        ("order", "id.desc"),
    ];
    let (n, rows) = fyle
        .list_all("/admin/dependent_expense_field_values", &deps, None)
        .await;
    assert_eq!(n, 3, "enabled values only by default");
    assert_eq!(
        strings(&rows, "parent_expense_field_value").len(),
        2,
        "two parents"
    );
    let mut disabled = deps.to_vec();
    disabled.push(("is_enabled", "eq.false"));
    let (n, _) = fyle
        .list_all("/admin/dependent_expense_field_values", &disabled, None)
        .await;
    assert_eq!(n, 1);

    let (_, merchant) = fyle
        .get(
            "/admin/expense_fields",
            &[("column_name", "eq.merchant"), ("order", "updated_at.desc")],
        )
        .await;
    let options = merchant["data"][0]["options"].as_array().expect("options");
    assert!(options.len() == 14 && options.iter().any(|o| o == "Café Ünïcode"));

    let (_, fields) = fyle
        .get(
            "/admin/expense_fields",
            &[
                ("order", "updated_at.desc"),
                ("is_custom", "eq.true"),
                ("type", "eq.SELECT"),
                ("is_enabled", "eq.true"),
            ],
        )
        .await;
    let region = fields["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|f| f["field_name"] == "Region")
        .expect("Region field");
    assert_eq!(region["options"].as_array().map(Vec::len), Some(5000));
    assert!(
        fields["data"]
            .as_array()
            .expect("data")
            .iter()
            .all(|f| f["field_name"] != "Old Field"),
        "the disabled custom field is filtered out"
    );
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_orgs_rows_never_leak_into_this_orgs_lists_or_webhooks() {
    let sb = variety().await;
    let mine = Fyle::connect(&sb).await;
    let theirs = Fyle::connect_org(&sb, OTHER_ORG_ID).await;
    for path in [
        "/admin/categories",
        "/admin/projects",
        "/admin/cost_centers",
        "/admin/employees",
    ] {
        for (client, org) in [(&mine, ORG), (&theirs, OTHER_ORG_ID)] {
            let (_, rows) = client.list_all(path, &[("order", "id")], None).await;
            assert!(!rows.is_empty(), "{org} has {path}");
            assert!(
                rows.iter().all(|r| r["org_id"] == org),
                "{path} of {org} holds only its rows"
            );
        }
    }
    let (_, same_id) = mine
        .get(
            "/admin/categories",
            &[("id", "eq.22330021"), ("order", "id")],
        )
        .await;
    assert_eq!(
        same_id["count"], 1,
        "the same id in the other org is another row"
    );
    let (_, other_only) = mine
        .get(
            "/admin/categories",
            &[("name", "eq.Other Org Only"), ("order", "id")],
        )
        .await;
    assert_eq!(other_only["count"], 0);

    let rx = Receiver::start().await;
    crate::webhooks::subscribe(&mine, &rx.url).await;
    sb.fyle()
        .rename(OTHER_ORG_ID, "categories", "22330021", "Their Trips")
        .expect("rename theirs");
    sb.fyle()
        .rename(ORG, "categories", "22330021", "Our Trips")
        .expect("rename ours");
    let got = rx.wait_for(1).await;
    assert_eq!(got[0].json()["data"]["org_id"], ORG);
    assert_eq!(got[0].json()["data"]["name"], "Our Trips");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        rx.received().len(),
        1,
        "the other org's change reached no subscription of ours"
    );
    rx.stop().await;
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generator_varies_types_hierarchies_and_states() {
    let sb = start().await;
    for entity in ["Account", "Item", "Class", "Customer", "TaxRate", "TaxCode"] {
        sb.qbo().generate(REALM, entity, 30).expect("generate");
    }
    let qbo = Qbo::new(&sb);
    let generated = " and Id >= '1000001'";
    let accounts = all(&qbo, "Account", generated).await;
    assert_eq!(accounts.len(), 30);
    assert_eq!(
        strings(&accounts, "AccountType").len(),
        15,
        "every AccountType"
    );
    assert_eq!(
        accounts.iter().filter(|a| a["Active"] == false).count(),
        3,
        "every 10th inactive"
    );
    assert!(
        accounts.iter().any(|a| a["SubAccount"] == true
            && a["FullyQualifiedName"] == "Account 000004:Account 000005")
    );
    assert!(accounts.iter().any(|a| a.get("AcctNum").is_none()));
    let items = all(&qbo, "Item", generated).await;
    assert_eq!(strings(&items, "Type").len(), 5, "every Item type");
    let customers = all(&qbo, "Customer", generated).await;
    assert!(
        customers
            .iter()
            .any(|c| c["Job"] == true && c["Level"] == 1)
    );
    let codes = all(&qbo, "TaxCode", generated).await;
    let empty = |c: &Value, l: &str| c[l]["TaxRateDetail"].as_array().is_none_or(Vec::is_empty);
    assert!(
        codes.iter().any(|c| empty(c, "PurchaseTaxRateList")),
        "sales-only codes"
    );
    assert!(
        codes.iter().any(|c| empty(c, "SalesTaxRateList")),
        "purchase-only codes"
    );

    sb.fyle().generate(ORG, "employees", 35).expect("generate");
    sb.fyle()
        .generate(ORG, "corporate_cards", 8)
        .expect("generate");
    sb.fyle()
        .generate(ORG, "expense_fields", 6000)
        .expect("generate");
    let fyle = Fyle::connect(&sb).await;
    let (_, disabled) = fyle
        .get(
            "/admin/employees",
            &[("is_enabled", "eq.false"), ("order", "id")],
        )
        .await;
    assert_eq!(disabled["count"], 5, "every 7th of 35");
    let (_, invited) = fyle
        .get(
            "/admin/employees",
            &[("has_accepted_invite", "eq.false"), ("order", "id")],
        )
        .await;
    assert_eq!(invited["count"], 7, "every 5th of 35");
    let (_, cards) = fyle
        .get(
            "/admin/corporate_cards",
            &[("id", "like.bagen%"), ("order", "id")],
        )
        .await;
    let shape = |n: &str| n.replace(|c: char| c.is_ascii_digit(), "9");
    let formats: BTreeSet<String> = cards["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|c| shape(c["card_number"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(formats.len(), 4, "four card-number formats: {cards}");
    let (_, field) = fyle
        .get(
            "/admin/expense_fields",
            &[("field_name", "eq.Generated Field"), ("order", "id")],
        )
        .await;
    assert_eq!(
        field["data"][0]["options"].as_array().map(Vec::len),
        Some(5000)
    );
    let (_, merchant) = fyle
        .get(
            "/admin/expense_fields",
            &[("column_name", "eq.merchant"), ("order", "id")],
        )
        .await;
    assert_eq!(
        merchant["data"][0]["options"].as_array().map(Vec::len),
        Some(3 + 5000),
        "the demo merchants kept, 5,000 added"
    );
    sb.stop().await;
}
