//! QBO throttling (Q7): 10 concurrent and 500 per minute per realm → 429 with the 3001 body, which
//! is XML even when the request asked for JSON (as in the reference's sample).

use std::time::Duration;

use crate::common::{Qbo, REALM, poll, start};
use attrsync_sandbox::{FaultAction, FaultRule, Side};

/// A query that keeps the raw answer (the 429 body is not JSON).
async fn raw_query(qbo: &Qbo, statement: &str) -> (u16, String, String) {
    let r = qbo
        .http
        .get(format!("{}/query", qbo.base))
        .bearer_auth(&qbo.token)
        .header("Accept", "application/json")
        .query(&[("query", statement), ("minorversion", "75")])
        .send()
        .await
        .expect("query");
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (r.status().as_u16(), ct, r.text().await.expect("body"))
}

fn assert_xml_3001(status: u16, content_type: &str, body: &str) {
    assert_eq!(status, 429);
    assert!(
        content_type.starts_with("application/xml"),
        "{content_type}"
    );
    assert!(
        body.contains(r#"<Fault type="SERVICE"><Error code="3001"><Message>message=ThrottleExceeded; errorCode=003001; statusCode=429</Message>"#),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_11th_concurrent_request_gets_429() {
    let sb = start().await;
    // Hold the next ten queries in flight for a while (10 s: long enough for a busy machine to
    // send the 11th meanwhile).
    sb.faults().add(FaultRule {
        side: Some(Side::Qbo),
        endpoint: "GET /v3/company/{realm}/query".into(),
        action: FaultAction::Latency { ms: 10_000 },
        skip: 0,
        times: Some(10),
    });
    let qbo = std::sync::Arc::new(Qbo::new(&sb));
    let mut slow = Vec::new();
    for _ in 0..10 {
        let qbo = std::sync::Arc::clone(&qbo);
        slow.push(tokio::spawn(async move {
            qbo.query("select * from Vendor").await.0
        }));
    }
    // The latency rule is used up once all ten hold a throttle permit.
    poll(Duration::from_secs(5), || async {
        sb.faults().list().0.is_empty().then_some(())
    })
    .await
    .expect("ten requests in flight");
    let (status, ct, body) = raw_query(&qbo, "select * from Vendor").await;
    assert_xml_3001(status, &ct, &body);
    for h in slow {
        assert_eq!(h.await.expect("task"), 200, "the ten in flight succeed");
    }
    assert_eq!(
        qbo.query("select * from Vendor").await.0,
        200,
        "capacity is back"
    );
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_501st_request_in_a_minute_gets_429() {
    let sb = start().await;
    let qbo = Qbo::new(&sb);
    for i in 0..500 {
        let (status, _) = qbo.query("select count(*) from Vendor").await;
        assert_eq!(status, 200, "request {i}");
    }
    let (status, ct, body) = raw_query(&qbo, "select count(*) from Vendor").await;
    assert_xml_3001(status, &ct, &body);
    let stats = sb.stats();
    let key = "GET /v3/company/{realm}/query";
    assert_eq!(
        stats.count(Side::Qbo, key),
        501,
        "refused requests are counted too"
    );
    let realm = stats.tenant(Side::Qbo, REALM).expect("realm counted");
    assert_eq!((realm.count, realm.throttled), (501, 1));
    sb.clock().advance(Duration::from_secs(60));
    assert_eq!(
        qbo.query("select count(*) from Vendor").await.0,
        200,
        "a new minute admits again"
    );
    sb.stop().await;
}
