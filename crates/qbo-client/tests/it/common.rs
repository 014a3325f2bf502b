//! Starting a sandbox and connecting clients to it.

use std::{sync::Arc, time::Duration};

use attrsync_qbo_client::{
    AppCredentials, ClientOptions, Endpoints, InMemoryTokenStore, QboClient, RetryPolicy, Secret,
    TokenStore, Tokens, Unlimited,
};
use attrsync_sandbox::{DEMO_REALM_ID, Sandbox, SandboxConfig, SandboxHandle, Seed, Side};

pub const REALM: &str = DEMO_REALM_ID;
pub const QUERY: &str = "GET /v3/company/{realm}/query";
pub const TOKEN: &str = "POST /oauth2/v1/tokens/bearer";

/// A demo-seeded sandbox (the reference fixtures) with its defaults: throttle on, grace 0.
pub async fn sandbox() -> SandboxHandle {
    sandbox_with(SandboxConfig {
        seed: Seed::Demo,
        ..SandboxConfig::default()
    })
    .await
}

pub async fn sandbox_with(config: SandboxConfig) -> SandboxHandle {
    Sandbox::start(SandboxConfig {
        workers: 1,
        ..config
    })
    .await
    .expect("sandbox starts on free ports")
}

pub fn endpoints(sb: &SandboxHandle) -> Endpoints {
    Endpoints::single_host(sb.qbo_url()).expect("sandbox URL")
}

pub fn app(sb: &SandboxHandle) -> AppCredentials {
    let app = sb.credentials().qbo_app;
    AppCredentials {
        client_id: app.client_id,
        client_secret: Secret::new(app.client_secret),
    }
}

/// A store holding the realm's current refresh token and no access token.
pub fn store(sb: &SandboxHandle) -> Arc<InMemoryTokenStore> {
    let store = InMemoryTokenStore::new();
    let rt = sb
        .qbo()
        .refresh_token(REALM)
        .expect("demo realm is connected");
    store.insert(REALM, Tokens::refresh_only(rt));
    Arc::new(store)
}

/// Quick retries, no client-side pacing, a short wait for other holders' rotations.
pub fn fast_options() -> ClientOptions {
    ClientOptions {
        retry: RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            max_retry_after: Duration::from_secs(5),
            retry_writes: true,
        },
        limiter: Arc::new(Unlimited),
        rotation_wait: Duration::from_millis(300),
        ..ClientOptions::default()
    }
}

pub fn client_with(
    sb: &SandboxHandle,
    store: Arc<dyn TokenStore>,
    options: ClientOptions,
) -> QboClient {
    QboClient::new(&endpoints(sb), app(sb), REALM, store, options).expect("client")
}

pub fn client(sb: &SandboxHandle) -> QboClient {
    client_with(sb, store(sb), fast_options())
}

/// Requests the sandbox counted for one QBO endpoint.
pub fn calls(sb: &SandboxHandle, endpoint: &str) -> u64 {
    sb.stats().count(Side::Qbo, endpoint)
}

/// Requests of one QBO endpoint answered with `status`.
pub fn calls_with_status(sb: &SandboxHandle, endpoint: &str, status: u16) -> u64 {
    sb.stats()
        .endpoints
        .get(&format!("qbo {endpoint}"))
        .and_then(|e| e.by_status.get(&status).copied())
        .unwrap_or(0)
}

/// 429s the sandbox served for the realm.
pub fn throttled(sb: &SandboxHandle) -> u64 {
    sb.stats()
        .tenant(Side::Qbo, REALM)
        .map_or(0, |t| t.throttled)
}
