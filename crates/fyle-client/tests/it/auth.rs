//! Token refresh and cluster lookup on the accounts host, the cached token, expiry in the middle
//! of a session, and credentials Fyle refuses.

use std::time::Duration;

use attrsync_fyle_client::{Credentials, Disposition, Error, Filters, FyleClient};
use attrsync_sandbox::{FaultAction, FaultRule, Seed, Side};
use serde_json::json;

use crate::common::{
    CATEGORIES, CLUSTER, ORG, TOKEN, calls, calls_with_status, connect, credentials, fast_options,
    sandbox,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_and_cluster_come_from_the_accounts_host_and_the_profile_names_the_org() {
    let sb = sandbox(Seed::Demo, None).await;
    assert_ne!(sb.fyle_accounts_url(), sb.fyle_url(), "two hosts");
    let fyle = connect(&sb).await;
    assert_eq!(fyle.org_id(), ORG);
    let p = fyle.profile();
    assert_eq!(p.org.id, ORG);
    assert!(p.roles.iter().any(|r| r == "ADMIN"), "{:?}", p.roles);
    assert!(!p.user.id.is_empty() && p.user.email.is_some());
    // The client was given the accounts host only; data calls reached the data host through
    // the cluster lookup.
    assert_eq!(calls(&sb, TOKEN), 1);
    assert_eq!(calls(&sb, CLUSTER), 1);
    assert_eq!(calls(&sb, "GET /platform/v1/spender/my_profile"), 1);
    let fresh = fyle.my_profile().await.expect("profile again");
    assert_eq!(&fresh, p);
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cached_access_token_is_reused_across_calls() {
    let sb = sandbox(Seed::Demo, None).await;
    let fyle = connect(&sb).await;
    for _ in 0..5 {
        fyle.list_all("categories", &Filters::new())
            .await
            .expect("list");
    }
    fyle.list_all("projects", &Filters::new())
        .await
        .expect("list");
    assert_eq!(calls(&sb, TOKEN), 1, "one refresh for the whole session");
    assert_eq!(calls(&sb, CLUSTER), 1);
    assert_eq!(calls(&sb, CATEGORIES), 5);
    assert_eq!(fyle.stats().token_refreshes, 1);
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_access_token_is_refreshed_once_and_the_call_repeated() {
    let sb = sandbox(Seed::Demo, None).await;
    let fyle = connect(&sb).await;
    // The client still believes its token has most of an hour left; Fyle's clock says it died.
    sb.clock().advance(Duration::from_secs(3601));
    let listing = fyle
        .list_all("categories", &Filters::new())
        .await
        .expect("list after expiry");
    assert!(!listing.rows.is_empty());
    assert_eq!(
        calls_with_status(&sb, CATEGORIES, 401),
        1,
        "one refused call"
    );
    assert_eq!(calls_with_status(&sb, CATEGORIES, 200), 1, "…repeated once");
    assert_eq!(calls(&sb, TOKEN), 2, "one refresh");
    assert_eq!(
        calls(&sb, CLUSTER),
        2,
        "the cluster is looked up again with the new token"
    );
    assert_eq!(fyle.stats().auth_retries, 1);
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_refused_with_an_expired_token_share_one_refresh() {
    let sb = sandbox(Seed::Demo, None).await;
    let fyle = connect(&sb).await;
    sb.fyle().expire_tokens();
    let calls_in_flight: Vec<_> = (0..8)
        .map(|_| {
            let f = fyle.clone();
            tokio::spawn(async move { f.list_all("categories", &Filters::new()).await })
        })
        .collect();
    for c in calls_in_flight {
        c.await.expect("task").expect("list");
    }
    assert_eq!(calls(&sb, TOKEN), 2, "connect + one refresh for all eight");
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_invalid_credentials_and_never_show_the_secret() {
    let sb = sandbox(Seed::Demo, None).await;
    let good = credentials(&sb, ORG);
    let wrong_token = Credentials {
        refresh_token: "rrr.revoked-refresh-token.ccc".into(),
        ..good.clone()
    };
    let err = FyleClient::connect(sb.fyle_accounts_url(), wrong_token, fast_options())
        .await
        .expect_err("a wrong refresh token is refused");
    assert!(
        matches!(&err, Error::InvalidCredentials { status: 401, .. }),
        "{err:?}"
    );
    assert_eq!(err.disposition(), Disposition::Broken);
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains("revoked-refresh-token") && !shown.contains(&good.client_secret),
        "{shown}"
    );
    assert_eq!(calls(&sb, TOKEN), 1, "a refused credential is not retried");

    let wrong_secret = Credentials {
        client_secret: "not-the-secret".into(),
        ..good.clone()
    };
    let err = FyleClient::connect(sb.fyle_accounts_url(), wrong_secret, fast_options())
        .await
        .expect_err("a wrong secret is refused");
    assert!(matches!(err, Error::InvalidCredentials { status: 401, .. }));

    let unknown_client = Credentials {
        client_id: "tpaNobody".into(),
        ..good
    };
    let err = FyleClient::connect(sb.fyle_accounts_url(), unknown_client, fast_options())
        .await
        .expect_err("an unknown client is refused");
    assert!(matches!(err, Error::InvalidCredentials { status: 404, .. }));
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_revoked_mid_session_is_invalid_credentials_on_the_next_refresh() {
    let sb = sandbox(Seed::Demo, None).await;
    let fyle = connect(&sb).await;
    // Revocation: from now on the token endpoint refuses this refresh token.
    sb.faults().add(FaultRule {
        side: Some(Side::Fyle),
        endpoint: TOKEN.into(),
        action: FaultAction::Status {
            status: 401,
            body: Some(json!({"message": "Wrong client secret or/and refresh token"})),
            retry_after: None,
        },
        skip: 0,
        times: None,
    });
    fyle.list_all("categories", &Filters::new())
        .await
        .expect("the cached access token still works");
    sb.fyle().expire_tokens();
    let err = fyle
        .list_all("categories", &Filters::new())
        .await
        .expect_err("no new token");
    assert!(
        matches!(&err, Error::InvalidCredentials { status: 401, message } if message.contains("refresh token")),
        "{err:?}"
    );
    assert_eq!(err.disposition(), Disposition::Broken);
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_refused_even_after_a_refresh_is_invalid_token() {
    let sb = sandbox(Seed::Demo, None).await;
    let fyle = connect(&sb).await;
    sb.faults().add(FaultRule {
        side: Some(Side::Fyle),
        endpoint: CATEGORIES.into(),
        action: FaultAction::Status {
            status: 498,
            body: Some(json!({"message": "expired token"})),
            retry_after: None,
        },
        skip: 0,
        times: Some(2),
    });
    let err = fyle
        .list_all("categories", &Filters::new())
        .await
        .expect_err("refused twice");
    assert!(
        matches!(err, Error::InvalidToken { status: 498, .. }),
        "{err:?}"
    );
    assert_eq!(calls(&sb, CATEGORIES), 2, "refresh once, repeat once, stop");
    assert_eq!(calls(&sb, TOKEN), 2);
    sb.stop().await;
}
