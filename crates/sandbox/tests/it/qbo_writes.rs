//! QBO create and sparse update (Q4): SyncToken, stale objects, duplicate names, deactivation.

use serde_json::json;

use crate::common::{Qbo, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_update_stale_and_duplicate() {
    let sb = start().await;
    let qbo = Qbo::new(&sb);
    let (status, created) = qbo
        .post("/vendor", &json!({"DisplayName": "Blue Harbor", "PrimaryEmailAddr": {"Address": "ap@blue.example"}, "CurrencyRef": {"value": "USD"}}))
        .await;
    assert_eq!(status, 200, "{created}");
    let v = &created["Vendor"];
    assert_eq!(v["SyncToken"], "0");
    let id = v["Id"].as_str().expect("Id").to_owned();
    assert!(v["MetaData"]["LastUpdatedTime"].is_string());

    let (status, updated) = qbo
        .post(
            "/vendor",
            &json!({"Id": id, "SyncToken": "0", "sparse": true, "CompanyName": "Blue Harbor Ltd"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(updated["Vendor"]["SyncToken"], "1");
    assert_eq!(updated["Vendor"]["CompanyName"], "Blue Harbor Ltd");
    assert_eq!(
        updated["Vendor"]["DisplayName"], "Blue Harbor",
        "sparse update keeps other fields"
    );

    let (status, stale) = qbo
        .post(
            "/vendor",
            &json!({"Id": id, "SyncToken": "0", "sparse": true, "CompanyName": "x"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(stale["Fault"]["Error"][0]["code"], "5010");

    let (status, dup) = qbo
        .post("/customer", &json!({"DisplayName": "Books by Bessie"}))
        .await;
    assert_eq!(status, 400, "customers and vendors share names");
    assert_eq!(dup["Fault"]["Error"][0]["code"], "6240");
    assert_eq!(dup["Fault"]["type"], "ValidationFault");
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivation_renames_with_deleted_suffix_and_hides_the_row() {
    let sb = start().await;
    let qbo = Qbo::new(&sb);
    let (status, body) = qbo
        .post(
            "/vendor",
            &json!({"Id": "30", "SyncToken": "0", "sparse": true, "Active": false}),
        )
        .await;
    assert_eq!(status, 200);
    let v = &body["Vendor"];
    assert_eq!(v["Active"], false);
    assert_eq!(v["DisplayName"], "Books by Bessie (deleted)");
    assert_eq!(v["SyncToken"], "1");
    let (_, active) = qbo.query("select * from Vendor").await;
    assert_eq!(
        active["QueryResponse"],
        json!({}),
        "inactive vendors are not listed by default"
    );
    let (_, inactive) = qbo.query("select * from Vendor where Active = false").await;
    assert_eq!(inactive["QueryResponse"]["Vendor"][0]["Id"], "30");
    // the name is free again
    let (status, _) = qbo
        .post("/customer", &json!({"DisplayName": "Books by Bessie"}))
        .await;
    assert_eq!(status, 200);
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_accounts_are_fully_qualified() {
    let sb = start().await;
    let qbo = Qbo::new(&sb);
    let (status, body) = qbo
        .post(
            "/account",
            &json!({"Name": "Parking", "AccountType": "Expense", "ParentRef": {"value": "55"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Account"]["FullyQualifiedName"], "Automobile:Parking");
    assert_eq!(body["Account"]["SubAccount"], true);
    assert_eq!(body["Account"]["Classification"], "Expense");
    let (status, _) = qbo.post("/taxrate", &json!({"Name": "X"})).await;
    assert_eq!(
        status, 400,
        "tax rates are not created through this endpoint"
    );
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requestid_replays_the_first_answer_of_a_retried_write() {
    let sb = start().await;
    let qbo = Qbo::new(&sb);
    let body = json!({"DisplayName": "Retry Supplies"});
    let (s1, first) = qbo.post("/vendor?requestid=6f0c2a9e-retry", &body).await;
    let (s2, second) = qbo.post("/vendor?requestid=6f0c2a9e-retry", &body).await;
    assert_eq!(
        (s1, s2),
        (200, 200),
        "the retry is not a duplicate-name error"
    );
    assert_eq!(first, second, "same answer, same Id");
    let (_, count) = qbo
        .query("select count(*) from Vendor where DisplayName = 'Retry Supplies'")
        .await;
    assert_eq!(count["QueryResponse"]["totalCount"], 1, "created once");
    let (status, _) = qbo.post("/vendor?requestid=another", &body).await;
    assert_eq!(status, 400, "a new requestid is a new write");
    sb.stop().await;
}
