//! Failures Fyle produces: bursts of 429 (with and without `Retry-After`) and 5xx, retries that
//! run out, a limiter that cannot answer, another org's rows.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use attrsync_fyle_client::{
    BoxFuture, ClientOptions, Disposition, Error, Filters, RateLimiter, RetryPolicy,
};
use attrsync_sandbox::{FaultAction, FaultRule, OTHER_ORG_ID, Seed, Side};
use serde_json::json;

use crate::common::{
    CATEGORIES, ORG, calls, calls_with_status, connect, connect_with, fast_options, sandbox,
};

fn rule(action: FaultAction, times: u32) -> FaultRule {
    FaultRule {
        side: Some(Side::Fyle),
        endpoint: CATEGORIES.into(),
        action,
        skip: 0,
        times: Some(times),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_429s_and_5xx_does_not_fail_a_list() {
    let sb = sandbox(Seed::Empty, None).await;
    sb.fyle()
        .generate(ORG, "categories", 1000)
        .expect("generate");
    let options = ClientOptions {
        retry: RetryPolicy {
            max_attempts: 8,
            ..fast_options().retry
        },
        ..fast_options()
    };
    let fyle = connect_with(&sb, ORG, options).await;
    // The second page meets four 429s, then (rules act in order) three server errors.
    sb.faults().add(FaultRule {
        skip: 1,
        ..rule(FaultAction::Throttle { retry_after: None }, 4)
    });
    sb.faults()
        .add(rule(FaultAction::ServerError { status: 503 }, 3));
    let listing = fyle
        .list_all("categories", &Filters::new())
        .await
        .expect("the list survives the burst");
    assert_eq!(listing.rows.len(), 1000);
    assert_eq!(calls_with_status(&sb, CATEGORIES, 429), 4);
    assert_eq!(calls_with_status(&sb, CATEGORIES, 503), 3);
    let stats = fyle.stats();
    assert_eq!(stats.retries, 7);
    assert_eq!(stats.throttled, 4);
    assert_eq!(
        calls(&sb, CATEGORIES),
        u64::from(listing.pages) + 7,
        "every failed attempt was repeated once, nothing more"
    );
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let sb = sandbox(Seed::Demo, None).await;
    let fyle = connect(&sb).await;
    sb.faults().add(rule(
        FaultAction::Throttle {
            retry_after: Some(1),
        },
        1,
    ));
    let started = Instant::now();
    fyle.list_all("categories", &Filters::new())
        .await
        .expect("list");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "waited {took:?}, Fyle asked for 1 s"
    );
    assert!(
        took < Duration::from_secs(10),
        "not a default back-off: {took:?}"
    );
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded_and_the_last_failure_is_typed() {
    let sb = sandbox(Seed::Demo, None).await;
    let options = ClientOptions {
        retry: RetryPolicy {
            max_attempts: 4,
            ..fast_options().retry
        },
        ..fast_options()
    };
    let fyle = connect_with(&sb, ORG, options).await;
    sb.faults().add(FaultRule {
        times: None,
        ..rule(FaultAction::ServerError { status: 502 }, 0)
    });
    let err = fyle
        .list_all("categories", &Filters::new())
        .await
        .expect_err("never recovers");
    assert!(
        matches!(
            err,
            Error::Server {
                status: 502,
                attempts: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.disposition(), Disposition::Transient);
    assert_eq!(calls(&sb, CATEGORIES), 4);

    sb.faults().clear();
    sb.faults().add(FaultRule {
        times: None,
        ..rule(FaultAction::Throttle { retry_after: None }, 0)
    });
    let err = fyle
        .list_all("categories", &Filters::new())
        .await
        .expect_err("throttled forever");
    assert!(
        matches!(err, Error::RateLimited { attempts: 4, .. }),
        "{err:?}"
    );
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_on_writes_follow_the_policy() {
    let sb = sandbox(Seed::Demo, None).await;
    let no_repeat = ClientOptions {
        retry: RetryPolicy {
            retry_writes: false,
            ..fast_options().retry
        },
        ..fast_options()
    };
    let fyle = connect_with(&sb, ORG, no_repeat).await;
    let post = "POST /platform/v1/admin/categories";
    sb.faults().add(FaultRule {
        endpoint: post.into(),
        ..rule(FaultAction::ServerError { status: 500 }, 1)
    });
    let err = fyle
        .post("categories", json!({"name": "Once"}))
        .await
        .expect_err("a write is not repeated after a 5xx when the policy says so");
    assert!(matches!(err, Error::Server { attempts: 1, .. }), "{err:?}");
    // …but a 429 means Fyle did not process it: repeated.
    sb.faults().add(FaultRule {
        endpoint: post.into(),
        ..rule(FaultAction::Throttle { retry_after: None }, 2)
    });
    let created = fyle
        .post("categories", json!({"name": "Once"}))
        .await
        .expect("repeated after 429s");
    assert_eq!(created["name"], "Once");
    assert_eq!(calls(&sb, post), 4);
    sb.stop().await;
}

/// A limiter whose store is down.
#[derive(Debug, Default)]
struct Down(AtomicU32);

impl RateLimiter for Down {
    fn acquire<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.0.fetch_add(1, Ordering::Relaxed);
            Err("lease store unavailable".to_owned())
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_limiter_permit_no_call_is_made() {
    let sb = sandbox(Seed::Demo, None).await;
    let down = Arc::new(Down::default());
    let options = ClientOptions {
        limiter: down.clone(),
        ..fast_options()
    };
    let err = attrsync_fyle_client::FyleClient::connect(
        sb.fyle_accounts_url(),
        crate::common::credentials(&sb, ORG),
        options,
    )
    .await
    .expect_err("no permit, no profile");
    assert!(matches!(err, Error::Limiter(_)), "{err:?}");
    assert_eq!(err.disposition(), Disposition::Transient);
    assert_eq!(down.0.load(Ordering::Relaxed), 1);
    assert_eq!(calls(&sb, "GET /platform/v1/spender/my_profile"), 0);
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_orgs_rows_are_never_returned() {
    let sb = sandbox(Seed::Variety, None).await;
    let ours = connect(&sb).await;
    let theirs = connect_with(&sb, OTHER_ORG_ID, fast_options()).await;
    let mine = ours
        .list_all("categories", &Filters::new())
        .await
        .expect("ours");
    let other = theirs
        .list_all("categories", &Filters::new())
        .await
        .expect("theirs");
    assert!(!mine.rows.is_empty() && !other.rows.is_empty());
    assert!(mine.rows.iter().all(|r| r["org_id"] == ORG));
    assert!(other.rows.iter().all(|r| r["org_id"] == OTHER_ORG_ID));

    // A data host that leaks (simulated): the foreign row is dropped and counted.
    let leak = json!({"count": 2, "offset": 0, "data": [
        {"id": 1, "org_id": ORG, "name": "Ours", "updated_at": "2024-05-02T10:00:00.000000+00:00"},
        {"id": 2, "org_id": OTHER_ORG_ID, "name": "Theirs", "updated_at": "2024-05-01T10:00:00.000000+00:00"},
    ]});
    sb.faults().add(rule(
        FaultAction::Status {
            status: 200,
            body: Some(leak),
            retry_after: None,
        },
        1,
    ));
    let leaked = ours
        .list_all("categories", &Filters::new())
        .await
        .expect("list");
    assert_eq!(leaked.rows.len(), 1);
    assert_eq!(leaked.rows[0]["name"], "Ours");
    assert_eq!(leaked.foreign_rows_dropped, 1);
    sb.stop().await;
}
