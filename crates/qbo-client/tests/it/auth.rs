//! OAuth against the sandbox's token endpoint: the first refresh goes through the store, tokens
//! are reused and shared, a 401 mid-run costs one refresh, and refusals are typed without
//! showing a secret.

use std::{sync::Arc, time::Duration};

use attrsync_qbo_client::{
    AccessToken, AppCredentials, Disposition, Error, InMemoryTokenStore, OAuthClient, Query,
    Secret, Tokens,
};
use attrsync_sandbox::{FaultAction, FaultRule, Side};
use chrono::{TimeDelta, Utc};
use serde_json::json;

use crate::common::{
    QUERY, REALM, TOKEN, app, calls, calls_with_status, client, client_with, endpoints,
    fast_options, sandbox, store,
};

fn vendors() -> Query {
    Query::select("Vendor")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_call_refreshes_through_the_store_and_the_token_is_reused_and_shared() {
    let sb = sandbox().await;
    let store = store(&sb);
    let first_rt = store.get(REALM).expect("stored").refresh_token;
    let qbo = client_with(&sb, store.clone(), fast_options());
    for _ in 0..5 {
        let rows = qbo.query_all(&vendors()).await.expect("query");
        assert!(rows.iter().any(|v| v["DisplayName"] == "Books by Bessie"));
    }
    assert_eq!(calls(&sb, TOKEN), 1, "one refresh for the whole run");
    let stored = store.get(REALM).expect("stored");
    assert_ne!(
        stored.refresh_token, first_rt,
        "the rotated token was stored"
    );
    assert_eq!(
        Some(stored.refresh_token.expose()),
        sb.qbo().refresh_token(REALM).as_deref(),
        "the store holds QBO's current refresh token"
    );
    assert!(stored.access.is_some(), "the access token is shared");
    let s = qbo.stats();
    assert_eq!((s.refreshes, s.token_requests, s.queries), (1, 1, 5));

    // Another process (replica) on the same store uses the stored access token.
    let replica = client_with(&sb, store.clone(), fast_options());
    replica.query_all(&vendors()).await.expect("query");
    assert_eq!(calls(&sb, TOKEN), 1, "no refresh for the replica");
    assert_eq!(replica.stats().adopted_tokens, 1);
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_token_expired_mid_run_is_refreshed_once_and_the_call_repeated() {
    let sb = sandbox().await;
    let qbo = client(&sb);
    qbo.query_all(&vendors()).await.expect("first");
    // The client believes its token has most of an hour left; QBO says it expired.
    sb.qbo().expire_tokens();
    let rows = qbo.query_all(&vendors()).await.expect("after expiry");
    assert!(!rows.is_empty());
    assert_eq!(calls_with_status(&sb, QUERY, 401), 1, "one refused call");
    assert_eq!(calls_with_status(&sb, QUERY, 200), 2, "…repeated once");
    assert_eq!(calls(&sb, TOKEN), 2, "connect + one refresh");
    let s = qbo.stats();
    assert_eq!((s.auth_retries, s.refreshes), (1, 2));
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_refused_with_an_expired_token_share_one_refresh() {
    let sb = sandbox().await;
    let qbo = client(&sb);
    qbo.query_all(&vendors()).await.expect("first");
    sb.qbo().expire_tokens();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let q = qbo.clone();
            tokio::spawn(async move { q.query_all(&vendors()).await })
        })
        .collect();
    for t in tasks {
        t.await.expect("task").expect("query");
    }
    assert_eq!(calls(&sb, TOKEN), 2, "connect + one refresh for all eight");
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_access_token_gets_the_xml_401_and_one_refresh() {
    let sb = sandbox().await;
    let store = store(&sb);
    let mut tokens = store.get(REALM).expect("stored");
    tokens.access = Some(AccessToken {
        token: Secret::new("eyJ-never-issued"),
        expires_at: Utc::now() + TimeDelta::hours(1),
    });
    store.insert(REALM, tokens);
    let qbo = client_with(&sb, store, fast_options());
    qbo.query_all(&vendors()).await.expect("query");
    assert_eq!(
        calls_with_status(&sb, QUERY, 401),
        1,
        "the XML General Authentication Error (code 100)"
    );
    assert_eq!(qbo.stats().auth_retries, 1);
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_refused_even_after_a_refresh_is_unauthorized() {
    let sb = sandbox().await;
    let qbo = client(&sb);
    let expired = json!({"fault": {"error": [{"message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
        "detail": "Token expired", "code": "3200", "element": null}], "type": "AUTHENTICATION"}});
    sb.faults().add(FaultRule {
        side: Some(Side::Qbo),
        endpoint: QUERY.into(),
        action: FaultAction::Status {
            status: 401,
            body: Some(expired),
            retry_after: None,
        },
        skip: 0,
        times: Some(2),
    });
    let err = qbo.query_all(&vendors()).await.expect_err("refused twice");
    assert!(
        matches!(&err, Error::Unauthorized { fault: Some(f) } if f.code() == Some(3200)),
        "{err:?}"
    );
    assert_eq!(err.disposition(), Disposition::Broken);
    assert_eq!(calls(&sb, QUERY), 2, "refresh once, repeat once, stop");
    assert_eq!(calls(&sb, TOKEN), 2);
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_grant_is_typed_broken_and_never_shows_the_token() {
    let sb = sandbox().await;
    let store = Arc::new(InMemoryTokenStore::new());
    store.insert(REALM, Tokens::refresh_only("AB11-revoked-refresh-token"));
    let qbo = client_with(&sb, store.clone(), fast_options());
    let started = std::time::Instant::now();
    let err = qbo.query_all(&vendors()).await.expect_err("refused");
    assert!(matches!(err, Error::InvalidGrant { .. }), "{err:?}");
    assert_eq!(err.disposition(), Disposition::Broken);
    let shown = format!("{err} {err:?} {qbo:?} {store:?}");
    assert!(
        !shown.contains("revoked-refresh-token") && !shown.contains("sandbox-client-secret"),
        "{shown}"
    );
    assert_eq!(
        calls(&sb, TOKEN),
        1,
        "a refused refresh token is not retried"
    );
    assert_eq!(calls(&sb, QUERY), 0, "no data call without a token");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "it first waited for another holder's rotation"
    );
    assert_eq!(
        store.get(REALM).map(|t| t.refresh_token),
        Some(Secret::new("AB11-revoked-refresh-token")),
        "the store is left as it was"
    );
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_app_credentials_and_an_unconnected_realm_are_broken() {
    let sb = sandbox().await;
    let wrong = AppCredentials {
        client_secret: Secret::new("not-the-secret"),
        ..app(&sb)
    };
    let qbo = attrsync_qbo_client::QboClient::new(
        &endpoints(&sb),
        wrong,
        REALM,
        store(&sb),
        fast_options(),
    )
    .expect("client");
    let err = qbo.query_all(&vendors()).await.expect_err("refused");
    assert!(
        matches!(err, Error::InvalidClient { status: 401, .. }),
        "{err:?}"
    );
    assert_eq!(err.disposition(), Disposition::Broken);

    let nothing = client_with(&sb, Arc::new(InMemoryTokenStore::new()), fast_options());
    let err = nothing.query_all(&vendors()).await.expect_err("no tokens");
    assert!(matches!(err, Error::NotConnected { .. }), "{err:?}");
    assert_eq!(err.disposition(), Disposition::Broken);
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_code_is_exchanged_once_for_tokens_that_work() {
    let sb = sandbox().await;
    let oauth = OAuthClient::new(endpoints(&sb).token_url.as_str(), app(&sb), &fast_options())
        .expect("oauth client");
    let code = sb.qbo().issue_code(REALM);
    let tokens = oauth
        .exchange_code(&code, "https://attrsync.example/qbo/callback")
        .await
        .expect("exchange");
    let access = tokens.access.clone().expect("access token");
    assert!(access.expires_at > Utc::now() + TimeDelta::minutes(55));
    assert!(tokens.refresh_expires_at.is_some());
    assert_eq!(
        Some(tokens.refresh_token.expose()),
        sb.qbo().refresh_token(REALM).as_deref(),
        "the code grant issued the realm's current refresh token"
    );
    let store = Arc::new(InMemoryTokenStore::new());
    store.insert(REALM, tokens);
    let qbo = client_with(&sb, store, fast_options());
    qbo.query_all(&vendors()).await.expect("query");
    assert_eq!(
        qbo.stats().token_requests,
        0,
        "the exchanged access token was used"
    );

    let err = oauth
        .exchange_code(&code, "https://attrsync.example/qbo/callback")
        .await
        .expect_err("a code works once");
    assert!(
        matches!(&err, Error::TokenRefused { status: 400, error, .. } if error == "invalid_grant"),
        "{err:?}"
    );
    assert_eq!(err.disposition(), Disposition::Rejected);
    assert_eq!(oauth.stats().code_exchanges, 1);
    sb.stop().await;
}
