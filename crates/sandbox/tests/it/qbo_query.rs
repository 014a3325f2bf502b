//! The QBO query endpoint (Q2) and read by id (Q3).

use serde_json::{Value, json};

use crate::common::{Qbo, REALM, start};

/// Statements that appear in the reference (and what qbo-sdk sends for every entity).
const REFERENCE_QUERIES: &[&str] = &[
    "select * from Account STARTPOSITION 1 MAXRESULTS 1000",
    "select * from Account where Active=false",
    "select count(*) from Account where Active = True",
    "select * from Customer where Active=false and Metadata.LastUpdatedTime >= '2024-05-01T10:00:00'",
    "select * from Customer where Metadata.LastUpdatedTime >= '2024-05-01T10:00:00-00:00'",
    "select * from Vendor where DisplayName = 'Books by Bessie'",
    "SELECT * FROM Customer WHERE Active IN (true, false)",
    "select * from Item STARTPOSITION 1 MAXRESULTS 1000",
    "select * from Class STARTPOSITION 1 MAXRESULTS 1000",
    "select * from Department STARTPOSITION 1 MAXRESULTS 1000",
    "select * from Employee STARTPOSITION 1 MAXRESULTS 1000",
    "select * from Vendor STARTPOSITION 1 MAXRESULTS 1000",
    "select * from TaxCode STARTPOSITION 1 MAXRESULTS 1000",
    "select * from TaxRate STARTPOSITION 1 MAXRESULTS 1000",
    "select * from Item where Name LIKE '%Con%' orderby MetaData.LastUpdatedTime desc",
];

fn entities(body: &Value, entity: &str) -> Vec<Value> {
    body["QueryResponse"][entity]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reference_query_is_accepted() {
    let sb = start().await;
    let qbo = Qbo::new(&sb);
    for q in REFERENCE_QUERIES {
        let (status, body) = qbo.query(q).await;
        assert_eq!(status, 200, "{q}: {body}");
        assert!(body["QueryResponse"].is_object(), "{q}: {body}");
        assert!(body["time"].is_string(), "{q}");
    }
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_counts_empty_pages_and_inactive_rows() {
    let sb = start().await;
    let qbo = Qbo::new(&sb);
    let (_, body) = qbo
        .query("select * from Account STARTPOSITION 1 MAXRESULTS 1000")
        .await;
    let names: Vec<&str> = body["QueryResponse"]["Account"]
        .as_array()
        .expect("accounts")
        .iter()
        .map(|a| a["Name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        names,
        vec!["Advertising", "Mastercard", "Automobile", "Fuel"],
        "active only, in Id order"
    );
    assert_eq!(body["QueryResponse"]["startPosition"], 1);
    assert_eq!(body["QueryResponse"]["maxResults"], 4);

    let (_, inactive) = qbo.query("select * from Account where Active=false").await;
    let rows = entities(&inactive, "Account");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["Name"], "Old Travel (deleted)");

    let (_, both) = qbo
        .query("select * from Account where Active IN (true, false)")
        .await;
    assert_eq!(entities(&both, "Account").len(), 5);

    let (_, count) = qbo
        .query("select count(*) from Account where Active = True")
        .await;
    assert_eq!(count["QueryResponse"], json!({"totalCount": 4}));

    let (status, empty) = qbo
        .query("select * from Account STARTPOSITION 1001 MAXRESULTS 1000")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        empty["QueryResponse"],
        json!({}),
        "entity key absent on an empty page"
    );
    let keys: Vec<&String> = empty.as_object().expect("object").keys().collect();
    assert_eq!(keys, vec!["QueryResponse", "time"]);

    let (_, fuel) = qbo
        .query("select * from Account where FullyQualifiedName = 'Automobile:Fuel'")
        .await;
    assert_eq!(entities(&fuel, "Account")[0]["Id"], "56");
    let (_, vendor) = qbo
        .query("select * from Vendor where DisplayName = 'Books by Bessie'")
        .await;
    assert_eq!(entities(&vendor, "Vendor")[0]["Id"], "30");
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_paging_loop_reads_every_customer() {
    let sb = start().await;
    sb.qbo()
        .generate(REALM, "Customer", 10_000)
        .expect("generate");
    let qbo = Qbo::new(&sb);
    let mut seen = Vec::new();
    let mut start = 1;
    loop {
        let (status, body) = qbo
            .query(&format!(
                "select * from Customer STARTPOSITION {start} MAXRESULTS 1000"
            ))
            .await;
        assert_eq!(status, 200);
        let page = entities(&body, "Customer");
        seen.extend(
            page.iter()
                .map(|c| c["Id"].as_str().unwrap_or("").to_owned()),
        );
        if page.len() < 1000 {
            break;
        }
        start += 1000;
        assert!(start < 20_000, "paging does not terminate");
    }
    // every 10th generated customer is inactive and not listed by default
    assert_eq!(
        seen.len(),
        9_002,
        "9,000 active generated + 2 demo customers"
    );
    let (_, count) = qbo.query("select count(*) from Customer").await;
    assert_eq!(count["QueryResponse"]["totalCount"], 9_002);
    let (_, count) = qbo
        .query("select count(*) from Customer where Active IN (true, false)")
        .await;
    assert_eq!(count["QueryResponse"]["totalCount"], 10_002);
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_with_text_body_is_the_same_query() {
    let sb = start().await;
    let qbo = Qbo::new(&sb);
    let resp = qbo
        .http
        .post(format!("{}/query?minorversion=75", qbo.base))
        .bearer_auth(&qbo.token)
        .header("Accept", "application/json")
        .header("Content-Type", "application/text")
        .body("select * from Vendor")
        .send()
        .await
        .expect("POST query");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(entities(&body, "Vendor").len(), 1);
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_queries_and_unknown_entities_are_validation_faults() {
    let sb = start().await;
    let qbo = Qbo::new(&sb);
    for bad in [
        "select from Account",
        "select * from Account where Name = 'x' or Name = 'y'",
        "select Name from Account",
        "select * from Account where Name = 'unterminated",
        "select * from Account maxresults 1001",
        "select * from Invoice2",
        "select * from account",
        "select * from Account where Colour = 'red'",
        "select * from Customer where Metadata.LastUpdatedTime >= 'yesterday'",
        "",
    ] {
        let (status, body) = qbo.query(bad).await;
        assert_eq!(status, 400, "{bad:?}");
        assert_eq!(body["Fault"]["type"], "ValidationFault", "{bad:?}: {body}");
        assert!(
            body["Fault"]["Error"][0]["code"].is_string(),
            "codes are strings"
        );
    }
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_by_id() {
    let sb = start().await;
    let qbo = Qbo::new(&sb);
    let (status, body) = qbo.get("/taxrate/6").await;
    assert_eq!(status, 200);
    assert_eq!(body["TaxRate"]["Name"], "ON TAX PURCHASE");
    assert_eq!(body["TaxRate"]["RateValue"], 13);
    for (path, key) in [
        ("/taxcode/2", "TaxCode"),
        ("/account/88", "Account"),
        ("/customer/8", "Customer"),
        ("/vendor/30", "Vendor"),
    ] {
        let (status, body) = qbo.get(path).await;
        assert_eq!(status, 200, "{path}");
        assert!(body[key]["Id"].is_string(), "{path}: {body}");
    }
    let (status, body) = qbo.get("/customer/999999").await;
    assert_eq!(status, 400);
    assert_eq!(body["Fault"]["Error"][0]["code"], "610");
    sb.stop().await;
}
