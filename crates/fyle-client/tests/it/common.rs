//! Starting a sandbox and connecting a client to it.

use std::{sync::Arc, time::Duration};

use attrsync_fyle_client::{ClientOptions, Credentials, FyleClient, RetryPolicy, Unlimited};
use attrsync_sandbox::{
    DEMO_ORG_ID, FyleMess, Sandbox, SandboxConfig, SandboxHandle, Seed, Side, TimestampResolution,
};

pub const ORG: &str = DEMO_ORG_ID;
pub const CATEGORIES: &str = "GET /platform/v1/admin/categories";
pub const TOKEN: &str = "POST /oauth/token";
pub const CLUSTER: &str = "POST /oauth/cluster";

/// A sandbox with `seed`, the Fyle rate limit as given (`None` = off) and one worker per host.
pub async fn sandbox(seed: Seed, rate_limit: Option<u32>) -> SandboxHandle {
    sandbox_with(SandboxConfig {
        seed,
        fyle_rate_limit_per_second: rate_limit,
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

/// The sandbox's messiest Fyle: whole-second stamps (unrelated writes tie), bulk posts sharing
/// one stamp, no hidden id order; the rate limit off because a paused clock stops its window.
pub async fn messy_sandbox() -> SandboxHandle {
    sandbox_with(SandboxConfig {
        seed: Seed::Empty,
        fyle_rate_limit_per_second: None,
        fyle_mess: FyleMess {
            updated_at_resolution: TimestampResolution::Seconds,
            bulk_shared_updated_at: true,
            implicit_id_tiebreak: false,
        },
        ..SandboxConfig::default()
    })
    .await
}

pub fn credentials(sb: &SandboxHandle, org: &str) -> Credentials {
    let c = sb
        .credentials()
        .fyle
        .into_iter()
        .find(|c| c.org_id == org)
        .expect("the org has a client");
    Credentials {
        client_id: c.client_id,
        client_secret: c.client_secret,
        refresh_token: c.refresh_token,
    }
}

/// Quick retries, no client-side pacing (for sandboxes whose rate limit is off).
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
        ..ClientOptions::default()
    }
}

pub async fn connect(sb: &SandboxHandle) -> FyleClient {
    connect_with(sb, ORG, fast_options()).await
}

pub async fn connect_with(sb: &SandboxHandle, org: &str, options: ClientOptions) -> FyleClient {
    FyleClient::connect(sb.fyle_accounts_url(), credentials(sb, org), options)
        .await
        .expect("connects")
}

/// Requests the sandbox counted for one Fyle endpoint.
pub fn calls(sb: &SandboxHandle, endpoint: &str) -> u64 {
    sb.stats().count(Side::Fyle, endpoint)
}

/// Requests of one Fyle endpoint answered with `status`.
pub fn calls_with_status(sb: &SandboxHandle, endpoint: &str, status: u16) -> u64 {
    sb.stats()
        .endpoints
        .get(&format!("fyle {endpoint}"))
        .and_then(|e| e.by_status.get(&status).copied())
        .unwrap_or(0)
}
