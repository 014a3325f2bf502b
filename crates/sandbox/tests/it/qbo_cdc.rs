//! Change Data Capture (Q5): shape, 30-day window, deletes.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Qbo, REALM, start};

fn since(sb: &attrsync_sandbox::SandboxHandle, ago: Duration) -> String {
    (sb.clock().now() - chrono::TimeDelta::from_std(ago).expect("small duration")).to_rfc3339()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_returns_changed_and_deleted_objects_grouped_by_entity() {
    let sb = start().await;
    let qbo = Qbo::new(&sb);
    let from = since(&sb, Duration::from_secs(60));
    sb.qbo()
        .rename(REALM, "Customer", "8", "Ocean View Road")
        .expect("rename");
    sb.qbo()
        .set_active(REALM, "Account", "41", false)
        .expect("deactivate");
    sb.qbo().delete(REALM, "Vendor", "30").expect("delete");
    let resp = qbo
        .http
        .get(format!("{}/cdc", qbo.base))
        .bearer_auth(&qbo.token)
        .header("Accept", "application/json")
        .query(&[
            ("entities", "Customer,Vendor,Account,Class"),
            ("changedSince", from.as_str()),
            ("minorversion", "75"),
        ])
        .send()
        .await
        .expect("cdc");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("JSON");
    assert!(body["time"].is_string());
    let groups = body["CDCResponse"][0]["QueryResponse"]
        .as_array()
        .expect("QueryResponse array")
        .clone();
    assert_eq!(groups.len(), 3, "Class did not change: {body}");
    assert_eq!(groups[0]["Customer"][0]["DisplayName"], "Ocean View Road");
    assert_eq!(
        groups[0]["Customer"][0]["FullyQualifiedName"],
        "Freeman Sporting Goods:Ocean View Road"
    );
    assert_eq!(groups[0]["startPosition"], 1);
    assert_eq!(groups[0]["maxResults"], 1);
    assert_eq!(
        groups[1]["Vendor"][0],
        json!({"domain": "QBO", "status": "Deleted", "Id": "30",
        "MetaData": {"LastUpdatedTime": groups[1]["Vendor"][0]["MetaData"]["LastUpdatedTime"]}})
    );
    assert_eq!(
        groups[2]["Account"][0]["Name"], "Mastercard (deleted)",
        "inactive objects are included"
    );
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_refuses_a_window_older_than_30_days_and_tax_entities() {
    let sb = start().await;
    let qbo = Qbo::new(&sb);
    let old = since(&sb, Duration::from_secs(31 * 24 * 3600));
    let ok = since(&sb, Duration::from_secs(29 * 24 * 3600));
    let call = |entities: &'static str, changed: String| {
        let qbo = &qbo;
        async move {
            let r = qbo
                .http
                .get(format!("{}/cdc", qbo.base))
                .bearer_auth(&qbo.token)
                .header("Accept", "application/json")
                .query(&[("entities", entities), ("changedSince", changed.as_str())])
                .send()
                .await
                .expect("cdc");
            (r.status().as_u16(), r.json::<Value>().await.expect("JSON"))
        }
    };
    let (status, body) = call("Customer", old).await;
    assert_eq!(status, 400);
    assert_eq!(body["Fault"]["type"], "ValidationFault");
    let (status, body) = call("Customer", ok.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["CDCResponse"][0]["QueryResponse"],
        json!([]),
        "nothing changed in the window"
    );
    let (status, _) = call("TaxCode", ok).await;
    assert_eq!(status, 400, "CDC does not support TaxCode");
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_caps_the_response_at_1000_objects() {
    let sb = start().await;
    let from = since(&sb, Duration::from_secs(60));
    for i in 0..1_050 {
        sb.qbo()
            .create(REALM, "Class", json!({"Name": format!("Class {i:04}")}))
            .expect("create");
    }
    let qbo = Qbo::new(&sb);
    let r = qbo
        .http
        .get(format!("{}/cdc", qbo.base))
        .bearer_auth(&qbo.token)
        .header("Accept", "application/json")
        .query(&[("entities", "Class"), ("changedSince", from.as_str())])
        .send()
        .await
        .expect("cdc");
    let body: Value = r.json().await.expect("JSON");
    assert_eq!(
        body["CDCResponse"][0]["QueryResponse"][0]["Class"]
            .as_array()
            .map(Vec::len),
        Some(1000)
    );
    assert_eq!(
        body["CDCResponse"][0]["QueryResponse"][0]["maxResults"],
        1000
    );
    sb.stop().await;
}
