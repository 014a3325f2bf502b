//! Configuration of a sandbox instance. Every default mirrors the real services
//! (token TTLs, QBO limits) except where a test-friendly value is documented.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::qbo::throttle::ThrottleConfig;

/// The demo org of reference §4.2.
pub const DEMO_ORG_ID: &str = "orNoatdUnm1w";
/// The demo realm of reference §4.4.
pub const DEMO_REALM_ID: &str = "9130357766900456";

/// What data to load at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Seed {
    /// Only the org and the realm, without data.
    Empty,
    /// The reference fixtures (§4.2 and §4.4).
    Demo,
    /// The reference fixtures plus the variety sync rules are tested on, and a second org (see
    /// `seed.rs`).
    Variety,
}

/// Body format of QBO webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// `{"eventNotifications": [...]}`.
    Legacy,
    /// A JSON array of CloudEvents 1.0 objects.
    CloudEvents,
}

/// How QBO reports a name-list entity becoming inactive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeactivationOp {
    /// `operation: "Delete"` / `qbo.<entity>.deleted.v1` (default; reference §3.8, inferred).
    Delete,
    /// `operation: "Update"` / `qbo.<entity>.updated.v1`.
    Update,
}

/// Precision of Fyle `updated_at` stamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimestampResolution {
    /// Microseconds, as Fyle renders them (`…55.201598+00:00`).
    Micros,
    /// Whole seconds (`….000000+00:00`), so unrelated writes in the same second tie.
    Seconds,
}

/// How messy the Fyle simulator's timestamps and list order are. The default is what production
/// does (as far as it is known); the contract suite also rounds stamps to seconds, so ties that are
/// rare in production happen in every test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FyleMess {
    /// Every row of one bulk post gets the same `updated_at` (one transaction, one `now()`;
    /// **(inferred)**). Off: each row its own, strictly increasing by 1 µs.
    pub bulk_shared_updated_at: bool,
    /// Precision of `updated_at` (default microseconds).
    pub updated_at_resolution: TimestampResolution,
    /// Break ties in list order by `id` even when the request does not order by `id` (default
    /// off: ties come in write order, see `fyle/store.rs`).
    pub implicit_id_tiebreak: bool,
}

impl Default for FyleMess {
    fn default() -> Self {
        Self {
            bulk_shared_updated_at: true,
            updated_at_resolution: TimestampResolution::Micros,
            implicit_id_tiebreak: false,
        }
    }
}

/// The company settings of a QBO realm (`CompanyInfo`, `Preferences`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QboCompany {
    /// Company name.
    pub company_name: String,
    /// `Country` (ISO code; `US` by default).
    pub country: String,
    /// Home currency (`USD`).
    pub home_currency: String,
    /// `MultiCurrencyEnabled` (off).
    pub multi_currency: bool,
    /// Sales tax / partner tax enabled (on).
    pub tax_enabled: bool,
}

impl Default for QboCompany {
    fn default() -> Self {
        Self {
            company_name: "Sandbox Company".to_owned(),
            country: "US".to_owned(),
            home_currency: "USD".to_owned(),
            multi_currency: false,
            tax_enabled: true,
        }
    }
}

/// Outgoing QBO webhook settings (per app, so one for the whole sandbox).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QboWebhookConfig {
    /// Receiver; `None` = no webhooks.
    pub url: Option<String>,
    /// The app's verifier token (HMAC key of `intuit-signature`).
    pub verifier_token: String,
    /// Body format.
    pub format: WebhookFormat,
    /// Operation reported for deactivation.
    pub deactivation: DeactivationOp,
    /// Events are batched over this window (production: 1–5 minutes; sandbox default 200 ms).
    pub batch_window_ms: u64,
}

impl Default for QboWebhookConfig {
    fn default() -> Self {
        Self {
            url: None,
            verifier_token: "simulator-verifier-token".to_owned(),
            format: WebhookFormat::Legacy,
            deactivation: DeactivationOp::Delete,
            batch_window_ms: 200,
        }
    }
}

/// Everything a sandbox needs to start.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Address to bind (both servers).
    pub host: String,
    /// Fyle cluster data host port (`/platform/v1`); 0 = any free port.
    pub fyle_port: u16,
    /// Fyle accounts host port (`/oauth/token`, `/oauth/cluster`); 0 = any free port.
    pub fyle_accounts_port: u16,
    /// QBO port; 0 = any free port.
    pub qbo_port: u16,
    /// Worker threads per server.
    pub workers: usize,
    /// Fixtures to load.
    pub seed: Seed,
    /// Generated objects of each type to add (stable ids and timestamps).
    pub generate: usize,
    /// The Fyle org created at start.
    pub org_id: String,
    /// The QBO realm created at start.
    pub realm_id: String,
    /// Fyle access-token lifetime (1 hour).
    pub fyle_access_ttl: Duration,
    /// Optional Fyle webhook signing secret (production Fyle signs nothing).
    pub fyle_webhook_secret: Option<String>,
    /// Fyle rate limit on the data host, in requests/second per client IP (documented: 10, the
    /// default); `None` turns it off (benchmarks that measure our own cost).
    pub fyle_rate_limit_per_second: Option<u32>,
    /// Fyle `updated_at` and list-order mess.
    pub fyle_mess: FyleMess,
    /// QBO access-token lifetime (3600 s).
    pub qbo_access_ttl: Duration,
    /// How long a rotated-away QBO refresh token keeps working (0 = stale at once).
    pub qbo_refresh_grace: Duration,
    /// QBO refresh-token lifetime from issue (100 days; set it to seconds to test expiry).
    pub qbo_refresh_ttl: Duration,
    /// QBO limits (500/minute, 10 concurrent per realm).
    pub qbo_throttle: ThrottleConfig,
    /// QBO webhooks.
    pub qbo_webhook: QboWebhookConfig,
    /// Company settings of the realm created at start.
    pub qbo_company: QboCompany,
    /// Answer JSON to every QBO request, whatever its `Accept` (lenient, for ad-hoc use; off by
    /// default and in tests: Intuit answers XML unless `Accept: application/json`).
    pub qbo_json_only: bool,
    /// Company time-zone offset of the realm, in minutes east of UTC (-420 = `-07:00`).
    pub qbo_tz_offset_minutes: i32,
    /// Attempts per outgoing webhook.
    pub webhook_attempts: u32,
    /// Timeout per webhook POST.
    pub webhook_timeout: Duration,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            fyle_port: 0,
            fyle_accounts_port: 0,
            qbo_port: 0,
            workers: 2,
            seed: Seed::Empty,
            generate: 0,
            org_id: DEMO_ORG_ID.to_owned(),
            realm_id: DEMO_REALM_ID.to_owned(),
            fyle_access_ttl: Duration::from_secs(3600),
            fyle_webhook_secret: None,
            fyle_rate_limit_per_second: Some(10),
            fyle_mess: FyleMess::default(),
            qbo_access_ttl: Duration::from_secs(3600),
            qbo_refresh_grace: Duration::ZERO,
            qbo_refresh_ttl: crate::qbo::auth::REFRESH_TOKEN_LIFETIME,
            qbo_throttle: ThrottleConfig::qbo(),
            qbo_webhook: QboWebhookConfig::default(),
            qbo_company: QboCompany::default(),
            qbo_json_only: false,
            qbo_tz_offset_minutes: -420,
            webhook_attempts: 3,
            webhook_timeout: Duration::from_secs(5),
        }
    }
}
