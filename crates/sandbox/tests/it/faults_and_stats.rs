//! Endpoint fault injection and the stats endpoint.

use std::time::{Duration, Instant};

use attrsync_sandbox::{FaultAction, FaultRule, Side};
use serde_json::{Value, json};

use crate::common::{Fyle, Qbo, start};

fn rule(side: Side, endpoint: &str, action: FaultAction, times: u32) -> FaultRule {
    FaultRule {
        side: Some(side),
        endpoint: endpoint.into(),
        action,
        skip: 0,
        times: Some(times),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_faults_with_and_without_retry_after() {
    let sb = start().await;
    let fyle = Fyle::connect(&sb).await;
    let list = "GET /platform/v1/admin/categories";
    sb.faults().add(rule(
        Side::Fyle,
        list,
        FaultAction::Throttle {
            retry_after: Some(7),
        },
        1,
    ));
    sb.faults().add(rule(
        Side::Fyle,
        list,
        FaultAction::Throttle { retry_after: None },
        1,
    ));
    let url = format!(
        "{}/categories",
        fyle.base.replace("/platform/v1", "/platform/v1/admin")
    );
    let r = fyle
        .http
        .get(&url)
        .bearer_auth(&fyle.token)
        .query(&[("order", "id")])
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 429);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("7")
    );
    assert_eq!(
        r.json::<Value>().await.expect("JSON"),
        json!({"message": "Too many requests"})
    );
    let r = fyle
        .http
        .get(&url)
        .bearer_auth(&fyle.token)
        .query(&[("order", "id")])
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_none());
    let r = fyle
        .http
        .get(&url)
        .bearer_auth(&fyle.token)
        .query(&[("order", "id")])
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200, "rules are used up");
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_latency_and_token_expiry() {
    let sb = start().await;
    let qbo = Qbo::new(&sb);
    sb.faults().add(rule(
        Side::Qbo,
        "/v3/company/*",
        FaultAction::ServerError { status: 503 },
        2,
    ));
    for _ in 0..2 {
        let (status, body) = qbo.query("select * from Vendor").await;
        assert_eq!(status, 503);
        assert_eq!(body["Fault"]["type"], "SystemFault");
    }
    assert_eq!(qbo.query("select * from Vendor").await.0, 200);

    sb.faults().add(rule(
        Side::Qbo,
        "GET /v3/company/{realm}/query",
        FaultAction::Latency { ms: 300 },
        1,
    ));
    let t = Instant::now();
    assert_eq!(qbo.query("select * from Vendor").await.0, 200);
    assert!(t.elapsed() >= Duration::from_millis(300), "latency applied");

    sb.faults()
        .add(rule(Side::Qbo, "*", FaultAction::ExpireTokens, 1));
    let (status, body) = qbo.query("select * from Vendor").await;
    assert_eq!(status, 401);
    assert_eq!(body["fault"]["error"][0]["code"], "3200");

    let fyle = Fyle::connect(&sb).await;
    sb.faults().add(rule(
        Side::Fyle,
        "/platform/v1/admin/*",
        FaultAction::ServerError { status: 500 },
        1,
    ));
    let (status, body) = fyle.get("/admin/projects", &[("order", "id")]).await;
    assert_eq!(
        (status, body),
        (500, json!({"message": "Internal server error"}))
    );
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_error_at_row_n_through_the_admin_http_api() {
    let sb = start().await;
    let fyle = Fyle::connect(&sb).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/_sandbox/faults", sb.fyle_url()))
        .json(&json!({"side": "fyle", "endpoint": "POST /platform/v1/admin/categories/bulk",
            "action": {"kind": "bulk_error", "row": 1, "message": "Invalid / disabled department found"}, "times": 1}))
        .send()
        .await
        .expect("add fault");
    assert_eq!(r.status(), 200);
    let bulk = json!({"data": [{"name": "A1"}, {"name": "B1"}, {"name": "C1"}]});
    let (status, body) = fyle.post("/admin/categories/bulk", &bulk).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"data": [{"key": "B1", "message": "Invalid / disabled department found", "row": 1}],
        "error": "BulkError", "message": null})
    );
    let (_, list) = fyle
        .get(
            "/admin/categories",
            &[("order", "id"), ("name", "in.(A1,B1,C1)")],
        )
        .await;
    assert_eq!(list["count"], 0, "nothing applied");
    let (status, _) = fyle.post("/admin/categories/bulk", &bulk).await;
    assert_eq!(status, 200, "the fault applied once");
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_calls_per_endpoint_and_log_them() {
    let sb = start().await;
    let fyle = Fyle::connect(&sb).await;
    let qbo = Qbo::new(&sb);
    for _ in 0..3 {
        fyle.get("/admin/categories", &[("order", "id")]).await;
    }
    qbo.query("select * from Vendor").await;
    qbo.get("/taxrate/6").await;
    let body: Value = reqwest::get(format!("{}/_sandbox/stats", sb.qbo_url()))
        .await
        .expect("stats")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        body["endpoints"]["fyle GET /platform/v1/admin/categories"]["count"],
        3
    );
    assert_eq!(
        body["endpoints"]["fyle GET /platform/v1/admin/categories"]["by_status"]["200"],
        3
    );
    assert_eq!(body["endpoints"]["fyle POST /oauth/token"]["count"], 1);
    assert_eq!(
        body["endpoints"]["qbo GET /v3/company/{realm}/query"]["count"],
        1
    );
    assert_eq!(
        body["endpoints"]["qbo GET /v3/company/{realm}/taxrate/{id}"]["count"],
        1
    );
    assert_eq!(body["total"], 6, "admin calls are not counted");
    let log = body["log"].as_array().expect("log");
    assert_eq!(log.len(), 6);
    assert_eq!(log[5]["path"], "/v3/company/9130357766900456/taxrate/6");
    assert_eq!(log[5]["tenant"], crate::common::REALM);

    // per org / realm, with bytes
    let org = &body["tenants"][format!("fyle {}", crate::common::ORG)];
    assert_eq!(org["count"], 3, "the token call has no org");
    assert_eq!(org["endpoints"]["GET /platform/v1/admin/categories"], 3);
    let realm = &body["tenants"][format!("qbo {}", crate::common::REALM)];
    assert_eq!(realm["count"], 2);
    assert_eq!(
        realm["endpoints"]["GET /v3/company/{realm}/taxrate/{id}"],
        1
    );
    let cats = &body["endpoints"]["fyle GET /platform/v1/admin/categories"];
    let page_bytes = cats["bytes_out"].as_u64().expect("bytes_out");
    assert!(
        page_bytes > 3 * 1000,
        "three pages of three categories: {page_bytes} bytes"
    );
    assert_eq!(org["bytes_out"].as_u64(), Some(page_bytes));
    assert!(body["endpoints"]["fyle POST /oauth/token"]["bytes_in"].as_u64() > Some(50));
    assert_eq!(body["throttled"], 0);
    reqwest::Client::new()
        .post(format!("{}/_sandbox/stats/reset", sb.fyle_url()))
        .send()
        .await
        .expect("reset");
    let after = sb.stats();
    assert_eq!((after.total, after.bytes_out), (0, 0));
    assert!(after.tenants.is_empty() && after.endpoints.is_empty());
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fyle_rate_limit_is_on_by_default_and_refuses_the_11th_request_in_a_second() {
    let sb = start().await;
    // The token call goes to the accounts host, which the data-API limit does not cover.
    let fyle = std::sync::Arc::new(Fyle::connect(&sb).await);
    // The sandbox's clock stands still, so the eleven requests share one second however
    // slowly a busy machine sends them.
    sb.clock().pause();
    let mut calls = Vec::new();
    for _ in 0..10 {
        let fyle = std::sync::Arc::clone(&fyle);
        calls.push(tokio::spawn(async move {
            fyle.get("/admin/tax_groups", &[("order", "id.asc")])
                .await
                .0
        }));
    }
    for c in calls {
        assert_eq!(c.await.expect("task"), 200);
    }
    let (status, body) = fyle.get("/admin/tax_groups", &[("order", "id.asc")]).await;
    assert_eq!(
        (status, body),
        (429, json!({"message": "Too many requests"}))
    );
    sb.clock().advance(Duration::from_secs(1));
    assert_eq!(
        fyle.get("/admin/tax_groups", &[("order", "id.asc")])
            .await
            .0,
        200
    );
    let stats = sb.stats();
    assert_eq!(stats.throttled, 1, "the 429 is counted as throttled");
    assert_eq!(
        stats
            .tenant(Side::Fyle, crate::common::ORG)
            .map(|t| t.count),
        Some(11),
        "requests with a valid token are counted for the org, the refused one is not"
    );
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fyle_rate_limit_can_be_turned_off() {
    let sb = crate::common::start_unthrottled().await;
    let fyle = Fyle::connect(&sb).await;
    for i in 0..30 {
        let (status, _) = fyle.get("/admin/tax_groups", &[("order", "id.asc")]).await;
        assert_eq!(status, 200, "request {i}");
    }
    sb.stop().await;
}
