//! QBO OAuth (Q1) and token errors (Q7).

use std::time::Duration;

use serde_json::Value;

use attrsync_sandbox::{SandboxConfig, Seed};

use crate::common::{Qbo, REALM, config, qbo_basic, start, start_with};

async fn refresh(sb: &attrsync_sandbox::SandboxHandle, basic: &str, token: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/oauth2/v1/tokens/bearer", sb.qbo_url()))
        .header("Authorization", basic)
        .header("Accept", "application/json")
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .expect("token call");
    assert!(
        r.headers().contains_key("intuit_tid"),
        "token responses carry intuit_tid"
    );
    (r.status().as_u16(), r.json().await.expect("JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_rotate_and_stale_ones_get_invalid_grant() {
    let sb = start().await;
    let basic = qbo_basic(&sb);
    let first = sb.qbo().refresh_token(REALM).expect("connected realm");
    let (status, body) = refresh(&sb, &basic, &first).await;
    assert_eq!(status, 200);
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["x_refresh_token_expires_in"], 8_640_000, "100 days");
    let second = body["refresh_token"]
        .as_str()
        .expect("rotated token")
        .to_owned();
    assert_ne!(second, first, "refresh token rotates");

    let (status, body) = refresh(&sb, &basic, &first).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");

    let (status, body) = refresh(&sb, &basic, &second).await;
    assert_eq!(status, 200, "the newest token works");
    let access = body["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    let qbo = Qbo {
        token: access,
        ..Qbo::new(&sb)
    };
    assert_eq!(qbo.query("select * from Vendor").await.0, 200);

    let (status, body) = refresh(&sb, "Basic bm9wZTpub3Bl", &second).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_expire_and_the_previous_one_has_a_configurable_grace() {
    let sb = start_with(SandboxConfig {
        seed: Seed::Demo,
        qbo_refresh_ttl: Duration::from_secs(30),
        qbo_refresh_grace: Duration::from_secs(5),
        ..config()
    })
    .await;
    let basic = qbo_basic(&sb);
    let first = sb.qbo().refresh_token(REALM).expect("connected realm");
    let (status, body) = refresh(&sb, &basic, &first).await;
    assert_eq!(status, 200);
    assert_eq!(body["x_refresh_token_expires_in"], 30);
    let second = body["refresh_token"].as_str().expect("rotated").to_owned();
    // within the grace the superseded token still works (and rotates again)
    let (status, body) = refresh(&sb, &basic, &first).await;
    assert_eq!(status, 200, "grace: {body}");
    let third = body["refresh_token"].as_str().expect("rotated").to_owned();
    sb.clock().advance(Duration::from_secs(6));
    let (status, body) = refresh(&sb, &basic, &second).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "grace over"
    );
    sb.clock().advance(Duration::from_secs(25));
    let (status, body) = refresh(&sb, &basic, &third).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "the current token expired 30 s after it was issued"
    );
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_code_grant_connects_a_realm() {
    let sb = start().await;
    let code = sb.qbo().issue_code(REALM);
    let r = reqwest::Client::new()
        .post(format!("{}/oauth2/v1/tokens/bearer", sb.qbo_url()))
        .header("Authorization", qbo_basic(&sb))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "http://localhost/cb"),
        ])
        .send()
        .await
        .expect("token call");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("JSON");
    assert_eq!(
        sb.qbo().refresh_token(REALM).as_deref(),
        body["refresh_token"].as_str()
    );
    sb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_access_token_gets_the_3200_body_and_other_realms_403() {
    let sb = start().await;
    let qbo = Qbo::new(&sb);
    assert_eq!(qbo.query("select * from Vendor").await.0, 200);
    sb.clock().advance(Duration::from_secs(3600));
    let (status, body) = qbo.query("select * from Vendor").await;
    assert_eq!(status, 401);
    assert_eq!(body["fault"]["error"][0]["code"], "3200");
    assert_eq!(body["fault"]["type"], "AUTHENTICATION");

    sb.qbo().add_realm("4620816365000000001");
    let other = Qbo {
        token: sb.qbo().access_token("4620816365000000001"),
        ..Qbo::new(&sb)
    };
    let (status, body) = other.query("select * from Vendor").await;
    assert_eq!(status, 403);
    assert_eq!(body["fault"]["error"][0]["code"], "3100");
    sb.stop().await;
}
