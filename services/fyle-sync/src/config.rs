//! fyle-sync's configuration (see `config/defaults.toml` for every key and its default).

use std::time::Duration;

/// Scheduled rounds (see `schedule`): the `[reconcile]` section both sync services share.
pub use attrsync_config::ReconcileConfig;
use attrsync_config::{
    ConfigError, DatabaseConfig, GrpcConfig, HealthConfig, HttpConfig, KafkaConfig,
    MappingClientConfig, Platform, RetentionConfig, SecretsConfig, ServiceConfig, TelemetryConfig,
    Validate, platform_sections,
};
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
    pub versions: VersionsConfig,
    pub fyle: FyleConfig,
    pub pulls: PullsConfig,
    pub secrets: SecretsConfig,
    pub ingest: IngestClientConfig,
    pub subscriptions: SubscriptionsConfig,
    pub reconcile: ReconcileConfig,
}

/// ingest's gRPC API, asked for a workspace's webhook URL (`GetWebhookEndpoint`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestClientConfig {
    pub endpoint: String,
}

/// The Fyle webhook subscription (see `subscription`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionsConfig {
    /// A registration that failed (ingest or Fyle unreachable) is retried this long after.
    #[serde(with = "humantime_serde")]
    pub retry_interval: Duration,
}

/// The Fyle app fyle-sync connects as (reference §1.1): its OAuth client on the accounts host.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FyleConfig {
    /// Fyle's accounts host (`POST /oauth/token`, `POST /oauth/cluster`).
    pub accounts_url: String,
    pub client_id: String,
    pub client_secret: String,
    /// Data-host requests per second per org, shared by every replica (Fyle allows 10).
    pub requests_per_second: f64,
}

impl std::fmt::Debug for FyleConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FyleConfig")
            .field("accounts_url", &self.accounts_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("requests_per_second", &self.requests_per_second)
            .finish()
    }
}

/// Pulls (`SyncDimensions`): see `pull`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullsConfig {
    /// A resource pulled more recently than this is not pulled again unless forced (the
    /// incumbent's 24-hour rule).
    #[serde(with = "humantime_serde")]
    pub min_interval: Duration,
    /// How long a replica's lease on one workspace × resource lasts without renewal.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// An incremental pull re-reads this far behind its watermark.
    #[serde(with = "humantime_serde")]
    pub incremental_overlap: Duration,
}

/// How event versions are read (see `apply`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionsConfig {
    /// How far past its receive time an event's `updated_at` may count.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.platform().validate()?;
        self.secrets.keyring()?;
        url::Url::parse(&self.fyle.accounts_url)
            .map_err(|e| ConfigError::invalid("fyle.accounts_url", e.to_string()))?;
        if !(self.fyle.requests_per_second.is_finite() && self.fyle.requests_per_second > 0.0) {
            return Err(ConfigError::invalid(
                "fyle.requests_per_second",
                "must be a positive number",
            ));
        }
        tonic::transport::Endpoint::from_shared(self.ingest.endpoint.clone())
            .map_err(|e| ConfigError::invalid("ingest.endpoint", e.to_string()))?;
        if self.subscriptions.retry_interval.is_zero() {
            return Err(ConfigError::invalid(
                "subscriptions.retry_interval",
                "must be positive",
            ));
        }
        self.reconcile.validate()?;
        if self.pulls.lease_ttl < Duration::from_secs(3) {
            return Err(ConfigError::invalid(
                "pulls.lease_ttl",
                "must be at least 3s (it is renewed every third of it)",
            ));
        }
        Ok(())
    }
}

impl ServiceConfig for Config {
    const DEFAULTS: &'static str = include_str!("../config/defaults.toml");
    const ENV_PREFIX: &'static str = "FYLE_SYNC";

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
        assert_eq!(config.database.schema, "fyle_sync");
        assert_eq!(config.pulls.min_interval, Duration::from_secs(24 * 3600));
        assert_eq!(config.ingest.endpoint, "http://127.0.0.1:50055");
        assert!(config.reconcile.enabled);
        assert!(config.reconcile.degraded_interval < config.reconcile.interval);
        assert!(!format!("{:?}", config.fyle).contains(&config.fyle.client_secret));
    }

    #[test]
    fn polling_while_degraded_must_not_be_slower_than_the_reconcile() {
        let err = Config::from_env_pairs(vec![
            ("FYLE_SYNC__RECONCILE__INTERVAL".into(), "1m".into()),
            (
                "FYLE_SYNC__RECONCILE__DEGRADED_INTERVAL".into(),
                "5m".into(),
            ),
        ])
        .expect_err("refused");
        assert!(
            err.to_string().contains("reconcile.degraded_interval"),
            "{err}"
        );
        let err = Config::from_env_pairs(vec![(
            "FYLE_SYNC__RECONCILE__RECOVER_AFTER".into(),
            "0".into(),
        )])
        .expect_err("refused");
        assert!(err.to_string().contains("reconcile.recover_after"), "{err}");
    }
}
