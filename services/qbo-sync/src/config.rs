//! qbo-sync's configuration (see `config/defaults.toml` for every key and its default).

use std::time::Duration;

/// Scheduled rounds (see `reconcile`): the `[reconcile]` section both sync services share.
pub use attrsync_config::ReconcileConfig;
use attrsync_config::{
    ConfigError, DatabaseConfig, GrpcConfig, HealthConfig, HttpConfig, KafkaConfig,
    MappingClientConfig, Platform, RetentionConfig, SecretsConfig, ServiceConfig, TelemetryConfig,
    Validate, platform_sections,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub grpc: GrpcConfig,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub kafka: KafkaConfig,
    pub mapping: MappingClientConfig,
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    pub qbo: QboConfig,
    pub pulls: PullsConfig,
    pub webhooks: WebhooksConfig,
    pub size_limit: SizeLimitConfig,
    pub secrets: SecretsConfig,
    pub reconcile: ReconcileConfig,
    pub rules_watch: RulesWatchConfig,
}

/// How often settings changes that alter what is stored are looked for (see `rules_watch`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesWatchConfig {
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
}

/// The Intuit app qbo-sync connects as (reference §3.1) and how hard it may use a company.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QboConfig {
    /// OAuth token endpoint (`…/oauth2/v1/tokens/bearer`).
    pub token_url: String,
    /// Data API base; calls go to `{api_url}/v3/company/{realm}/…`.
    pub api_url: String,
    pub client_id: String,
    pub client_secret: String,
    /// The redirect URI registered with the app (sent again when a code is exchanged).
    pub redirect_uri: String,
    /// `minorversion` sent on every data call.
    pub minor_version: u32,
    /// Requests per minute per realm, one budget shared by every replica (Intuit allows 500).
    pub requests_per_minute: f64,
    /// Requests in flight per realm, for every replica together (Intuit allows 10).
    pub max_concurrent: usize,
}

impl std::fmt::Debug for QboConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QboConfig")
            .field("token_url", &self.token_url)
            .field("api_url", &self.api_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("redirect_uri", &self.redirect_uri)
            .field("minor_version", &self.minor_version)
            .field("requests_per_minute", &self.requests_per_minute)
            .field("max_concurrent", &self.max_concurrent)
            .finish()
    }
}

/// Pulls (`SyncDimensions` and the scheduler): see `pull`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullsConfig {
    /// A workspace pulled in full more recently than this is not pulled again unless forced
    /// (the incumbent's 24-hour rule, #34).
    #[serde(with = "humantime_serde")]
    pub min_interval: Duration,
    /// How long a replica's lease on one realm × entity lasts without renewal.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// An incremental pull reads this far behind its watermark (QBO stamps committed out of
    /// order, clock differences).
    #[serde(with = "humantime_serde")]
    pub incremental_overlap: Duration,
}

/// Targeted fetches after QBO webhooks: see `fetch`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Changes of one realm arriving within this window are fetched together.
    #[serde(with = "humantime_serde")]
    pub coalesce_window: Duration,
    /// A fetch that failed is retried after this, doubling up to `retry_max`.
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
}

/// The size limit (incumbent #30): a workspace created after `applies_after` with more than
/// `max_active` active records of an entity (employees exempt) does not sync that entity.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeLimitConfig {
    pub max_active: u64,
    pub applies_after: DateTime<Utc>,
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.platform().validate()?;
        self.secrets.keyring()?;
        for (key, value) in [
            ("qbo.token_url", &self.qbo.token_url),
            ("qbo.api_url", &self.qbo.api_url),
        ] {
            url::Url::parse(value).map_err(|e| ConfigError::invalid(key, e.to_string()))?;
        }
        if !(self.qbo.requests_per_minute.is_finite() && self.qbo.requests_per_minute > 0.0) {
            return Err(ConfigError::invalid(
                "qbo.requests_per_minute",
                "must be a positive number",
            ));
        }
        if !(1..=10).contains(&self.qbo.max_concurrent) {
            return Err(ConfigError::invalid(
                "qbo.max_concurrent",
                "must be between 1 and 10 (Intuit's limit per realm)",
            ));
        }
        self.reconcile.validate()?;
        if self.pulls.lease_ttl < Duration::from_secs(3) {
            return Err(ConfigError::invalid(
                "pulls.lease_ttl",
                "must be at least 3s (it is renewed every third of it)",
            ));
        }
        if self.webhooks.retry_initial.is_zero()
            || self.webhooks.retry_max < self.webhooks.retry_initial
        {
            return Err(ConfigError::invalid(
                "webhooks.retry_max",
                "retry_initial must be positive and at most retry_max",
            ));
        }
        Ok(())
    }
}

impl ServiceConfig for Config {
    const DEFAULTS: &'static str = include_str!("../config/defaults.toml");
    const ENV_PREFIX: &'static str = "QBO_SYNC";

    fn platform(&self) -> Platform<'_> {
        platform_sections!(self, mapping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_are_valid() {
        let config = Config::from_env_pairs(vec![]).expect("defaults are valid");
        assert_eq!(config.database.schema, "qbo_sync");
        assert_eq!(config.pulls.min_interval, Duration::from_secs(24 * 3600));
        assert_eq!(config.size_limit.max_active, 30_000);
        assert!(config.reconcile.enabled);
        assert_eq!(config.reconcile.interval, Duration::from_secs(15 * 60));
        assert_eq!(
            config.reconcile.degraded_interval,
            Duration::from_secs(2 * 60)
        );
        assert!(!format!("{:?}", config.qbo).contains(&config.qbo.client_secret));
    }

    #[test]
    fn reconcile_intervals_are_checked() {
        let err = Config::from_env_pairs(vec![
            ("QBO_SYNC__RECONCILE__INTERVAL".into(), "1m".into()),
            ("QBO_SYNC__RECONCILE__DEGRADED_INTERVAL".into(), "5m".into()),
        ])
        .expect_err("refused");
        assert!(
            err.to_string().contains("reconcile.degraded_interval"),
            "{err}"
        );
        let fast = Config::from_env_pairs(vec![
            ("QBO_SYNC__RECONCILE__INTERVAL".into(), "1s".into()),
            (
                "QBO_SYNC__RECONCILE__DEGRADED_INTERVAL".into(),
                "500ms".into(),
            ),
        ])
        .expect("seconds are allowed, for tests");
        assert_eq!(fast.reconcile.interval, Duration::from_secs(1));
    }
}
