//! Throttling: with the sandbox's per-realm limits on (window shrunk so a test takes seconds),
//! many concurrent calls never surface a 429 — the in-process limiter keeps under the limits,
//! and a client without it rides the 429s out with backoff. Also: the limiter is awaited before
//! every attempt, a limiter that fails closes the call, and bounded retries end in typed errors
//! read from the sandbox's XML and JSON faults.

use std::{
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use attrsync_qbo_client::{
    BoxFuture, ClientOptions, Disposition, Error, Permit, Query, RequestLimiter, RetryPolicy,
    limits,
};
use attrsync_sandbox::{
    FaultAction, FaultRule, SandboxHandle, Side, qbo::throttle::ThrottleConfig,
};
use serde_json::json;

use crate::common::{
    QUERY, calls, calls_with_status, client_with, fast_options, sandbox, store, throttled,
};

/// 50 requests per second and 10 in flight per realm; every query held 40 ms in flight.
async fn throttled_sandbox() -> SandboxHandle {
    let sb = sandbox().await;
    sb.set_qbo_throttle(ThrottleConfig {
        per_window: 50,
        window_ms: 1000,
        concurrent: 10,
    });
    sb.faults().add(FaultRule {
        side: Some(Side::Qbo),
        endpoint: QUERY.into(),
        action: FaultAction::Latency { ms: 40 },
        skip: 0,
        times: None,
    });
    sb
}

async fn many_concurrent_queries(qbo: &attrsync_qbo_client::QboClient, n: usize) {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let q = qbo.clone();
            tokio::spawn(async move { q.query_all(&Query::select("Vendor")).await })
        })
        .collect();
    for t in tasks {
        let rows = t
            .await
            .expect("task")
            .expect("no 429 surfaces as a failure");
        assert!(!rows.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_in_process_limiter_keeps_a_realm_under_both_limits() {
    let sb = throttled_sandbox().await;
    // 40/s against the sandbox's 50 per second: room for a busy machine's jitter.
    let options = ClientOptions {
        limiter: Arc::new(limits::in_process_with(
            NonZeroU32::new(40).unwrap(),
            Duration::from_secs(1),
            NonZeroU32::new(10).unwrap(),
        )),
        ..fast_options()
    };
    let qbo = client_with(&sb, store(&sb), options);
    many_concurrent_queries(&qbo, 80).await;
    assert_eq!(throttled(&sb), 0, "the sandbox never had to throttle");
    assert_eq!(calls(&sb, QUERY), 80);
    assert_eq!(qbo.stats().throttled, 0);
    sb.stop().await;
}

/// Counts permits and grants them all (another app or replica ignoring the limits).
#[derive(Debug, Default)]
struct Counting(AtomicU32);

impl RequestLimiter for Counting {
    fn acquire<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<Permit, String>> {
        Box::pin(async move {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(Permit::free())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_pacing_the_429s_are_ridden_out_and_every_attempt_took_a_permit() {
    let sb = throttled_sandbox().await;
    let counting = Arc::new(Counting::default());
    let options = ClientOptions {
        limiter: counting.clone(),
        retry: RetryPolicy {
            max_attempts: 30,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(400),
            ..fast_options().retry
        },
        ..fast_options()
    };
    let qbo = client_with(&sb, store(&sb), options);
    many_concurrent_queries(&qbo, 40).await;
    let served_429 = calls_with_status(&sb, QUERY, 429);
    assert!(
        served_429 > 0,
        "40 at once against 10 in flight must be throttled"
    );
    assert_eq!(qbo.stats().throttled, served_429, "every 429 was seen…");
    assert_eq!(qbo.stats().retries, served_429, "…and repeated");
    assert_eq!(
        u64::from(counting.0.load(Ordering::Relaxed)),
        calls(&sb, QUERY),
        "a permit before every attempt, retries included"
    );
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_retries_end_in_typed_errors_read_from_xml_and_json_faults() {
    let sb = sandbox().await;
    let options = ClientOptions {
        retry: RetryPolicy {
            max_attempts: 3,
            ..fast_options().retry
        },
        ..fast_options()
    };
    let qbo = client_with(&sb, store(&sb), options);
    let rule = |action| FaultRule {
        side: Some(Side::Qbo),
        endpoint: QUERY.into(),
        action,
        skip: 0,
        times: None,
    };
    // The sandbox's 429 body is XML even for a JSON client (reference §3.6 sample).
    sb.faults()
        .add(rule(FaultAction::Throttle { retry_after: None }));
    let err = qbo
        .query_all(&Query::select("Vendor"))
        .await
        .expect_err("throttled throughout");
    assert!(
        matches!(&err, Error::Throttled { attempts: 3, fault: Some(f), .. } if f.code() == Some(3001) && f.kind.as_deref() == Some("SERVICE")),
        "{err:?}"
    );
    assert_eq!(err.disposition(), Disposition::Transient);

    sb.faults().clear();
    sb.faults()
        .add(rule(FaultAction::ServerError { status: 503 }));
    let err = qbo
        .query_all(&Query::select("Vendor"))
        .await
        .expect_err("failing throughout");
    assert!(
        matches!(&err, Error::Server { status: 503, attempts: 3, fault: Some(f), .. } if f.is_system()),
        "{err:?}"
    );
    assert_eq!(calls(&sb, QUERY), 6);

    // A 200 that carries a Fault is an error.
    sb.faults().clear();
    sb.faults().add(FaultRule {
        times: Some(1),
        ..rule(FaultAction::Status {
            status: 200,
            body: Some(json!({"Fault": {"Error": [{"Message": "A business validation error has occurred",
                "Detail": "Business Validation Error: the period is closed", "code": "6210", "element": ""}],
                "type": "ValidationFault"}, "time": "2024-05-02T03:15:22.123-07:00"})),
            retry_after: None,
        })
    });
    let err = qbo
        .query_all(&Query::select("Vendor"))
        .await
        .expect_err("fault in a 200");
    assert!(
        matches!(&err, Error::Validation { status: 200, fault } if fault.code() == Some(6210)),
        "{err:?}"
    );
    sb.stop().await;
}

/// A limiter whose shared store is down.
#[derive(Debug)]
struct Down;

impl RequestLimiter for Down {
    fn acquire<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<Permit, String>> {
        Box::pin(async { Err("bucket store unavailable".to_owned()) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_limiter_permit_no_data_call_is_made() {
    let sb = sandbox().await;
    let qbo = client_with(
        &sb,
        store(&sb),
        ClientOptions {
            limiter: Arc::new(Down),
            ..fast_options()
        },
    );
    let err = qbo
        .query_all(&Query::select("Vendor"))
        .await
        .expect_err("no permit");
    assert!(matches!(err, Error::Limiter(_)), "{err:?}");
    assert_eq!(err.disposition(), Disposition::Transient);
    assert_eq!(calls(&sb, QUERY), 0);
    sb.stop().await;
}
