//! QBO writes are as strict as Intuit's: unknown properties, missing required ones, the shared
//! customer/vendor/employee name list (6240) and `:` in names are refused.

use serde_json::{Value, json};

use crate::common::{Qbo, start};

fn fault(body: &Value) -> (&str, &str) {
    let e = &body["Fault"]["Error"][0];
    (
        e["code"].as_str().unwrap_or_default(),
        e["Detail"].as_str().unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_properties_are_refused_on_create_and_update() {
    let sb = start().await;
    let qbo = Qbo::new(&sb);
    let (status, body) = qbo
        .post(
            "/vendor",
            &json!({"DisplayName": "Harbor Supplies", "Colour": "blue"}),
        )
        .await;
    assert_eq!(status, 400);
    let (code, detail) = fault(&body);
    assert_eq!(code, "2010");
    assert!(detail.contains("Colour"), "{detail}");
    let (status, body) = qbo
        .post(
            "/vendor",
            &json!({"Id": "30", "SyncToken": "0", "sparse": true, "displayname": "x"}),
        )
        .await;
    assert_eq!(
        (status, fault(&body).0),
        (400, "2010"),
        "property names are case-sensitive"
    );
    // a full object read back and posted again is accepted (read-only properties are ignored)
    let (_, read) = qbo.get("/vendor/30").await;
    let mut echo = read["Vendor"].clone();
    echo["CompanyName"] = json!("Books by Bessie Inc");
    let (status, body) = qbo.post("/vendor", &echo).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Vendor"]["SyncToken"], "1");
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_need_an_account_type_and_items_the_refs_of_their_type() {
    let sb = start().await;
    let qbo = Qbo::new(&sb);
    let (status, body) = qbo.post("/account", &json!({"Name": "Parking"})).await;
    assert_eq!((status, fault(&body).0), (400, "2020"));
    assert_eq!(body["Fault"]["Error"][0]["element"], "AccountType");
    let (status, body) = qbo
        .post(
            "/account",
            &json!({"Name": "Parking", "AccountType": "Expenses"}),
        )
        .await;
    assert_eq!(
        (status, fault(&body).0),
        (400, "6000"),
        "not a QBO AccountType"
    );
    let (status, body) = qbo
        .post(
            "/account",
            &json!({"Name": "Loan", "AccountType": "Long Term Liability", "AcctNum": "2700"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Account"]["Classification"], "Liability");

    let (status, body) = qbo.post("/item", &json!({"Name": "Design"})).await;
    assert_eq!(
        (status, body["Fault"]["Error"][0]["element"].as_str()),
        (400, Some("Type"))
    );
    let (status, body) = qbo
        .post("/item", &json!({"Name": "Design", "Type": "Service"}))
        .await;
    assert_eq!(
        (status, body["Fault"]["Error"][0]["element"].as_str()),
        (400, Some("IncomeAccountRef"))
    );
    let (status, body) = qbo
        .post(
            "/item",
            &json!({"Name": "Widget", "Type": "Inventory", "IncomeAccountRef": {"value": "7"},
            "ExpenseAccountRef": {"value": "7"}}),
        )
        .await;
    assert_eq!(
        (status, body["Fault"]["Error"][0]["element"].as_str()),
        (400, Some("AssetAccountRef"))
    );
    let (status, body) = qbo
        .post(
            "/item",
            &json!({"Name": "Design", "Type": "Service", "IncomeAccountRef": {"value": "4242"}}),
        )
        .await;
    assert_eq!(
        (status, fault(&body).0),
        (400, "6000"),
        "the ref names no account"
    );
    let (status, body) = qbo
        .post(
            "/item",
            &json!({"Name": "Design", "Type": "Service", "IncomeAccountRef": {"value": "7"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = qbo
        .post("/item", &json!({"Name": "Hardware", "Type": "Category"}))
        .await;
    assert_eq!(status, 200, "categories need no accounts: {body}");
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_vendors_and_employees_share_one_name_list() {
    let sb = start().await;
    let qbo = Qbo::new(&sb);
    // demo: Vendor "Books by Bessie", Employee "Jamine", Customer "Freeman Sporting Goods"
    for (path, name) in [
        ("/vendor", "Jamine"),
        ("/vendor", "Freeman Sporting Goods"),
        ("/employee", "Books by Bessie"),
        ("/customer", "JAMINE"),
    ] {
        let (status, body) = qbo.post(path, &json!({"DisplayName": name})).await;
        assert_eq!((status, fault(&body).0), (400, "6240"), "{path} {name}");
        assert!(fault(&body).1.contains("customer, vendor or employee"));
    }
    let (status, body) = qbo
        .post(
            "/account",
            &json!({"Name": "Advertising", "AccountType": "Expense"}),
        )
        .await;
    assert_eq!(
        (status, fault(&body).0),
        (400, "6240"),
        "accounts are unique among accounts"
    );
    let (status, _) = qbo.post("/class", &json!({"Name": "Jamine"})).await;
    assert_eq!(status, 200, "other lists are separate");
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_a_colon_are_refused() {
    let sb = start().await;
    let qbo = Qbo::new(&sb);
    for (path, body) in [
        ("/customer", json!({"DisplayName": "Freeman:Ocean View"})),
        (
            "/account",
            json!({"Name": "Auto:Fuel", "AccountType": "Expense"}),
        ),
        ("/class", json!({"Name": "East:North"})),
    ] {
        let (status, reply) = qbo.post(path, &body).await;
        assert_eq!((status, fault(&reply).0), (400, "6000"), "{path}");
        assert!(fault(&reply).1.contains("colon"));
    }
    let (status, reply) = qbo
        .post(
            "/customer",
            &json!({"Id": "7", "SyncToken": "0", "sparse": true, "DisplayName": "A:B"}),
        )
        .await;
    assert_eq!((status, fault(&reply).0), (400, "6000"), "renames too");
    sb.stop().await;
}
