//! QBO throttling (Q7): 10 concurrent and 500 per minute per realm → 429 with the 3001 body.

use std::time::Duration;

use attrsync_sandbox::{FaultAction, FaultRule, Side};
use serde_json::Value;

use crate::common::{Qbo, poll, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_11th_concurrent_request_gets_429() {
    let sb = start().await;
    // Hold the next ten queries in flight for a while.
    sb.faults().add(FaultRule {
        side: Some(Side::Qbo),
        endpoint: "GET /v3/company/{realm}/query".into(),
        action: FaultAction::Latency { ms: 1500 },
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
    let (status, body) = qbo.query("select * from Vendor").await;
    assert_eq!(status, 429);
    assert_eq!(body["fault"]["error"][0]["code"], "3001");
    assert_eq!(body["fault"]["type"], "SERVICE");
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
    let (status, body): (u16, Value) = qbo.query("select count(*) from Vendor").await;
    assert_eq!(status, 429);
    assert_eq!(body["fault"]["error"][0]["code"], "3001");
    let stats = sb.stats();
    let key = "GET /v3/company/{realm}/query";
    assert_eq!(
        stats.count(Side::Qbo, key),
        501,
        "refused requests are counted too"
    );
    sb.clock().advance(Duration::from_secs(60));
    assert_eq!(
        qbo.query("select count(*) from Vendor").await.0,
        200,
        "a new minute admits again"
    );
    sb.stop().await;
}
