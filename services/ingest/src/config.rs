//! ingest's configuration (see `config/defaults.toml` for every key and its default).

use std::time::Duration;

use attrsync_config::{
    ConfigError, DatabaseConfig, GrpcConfig, HealthConfig, HttpConfig, KafkaConfig,
    MappingClientConfig, Platform, RetentionConfig, SecretsConfig, ServiceConfig, TelemetryConfig,
    Validate, platform_sections,
};
use serde::Deserialize;

use crate::auth::AuthMode;

/// The largest body ingest accepts: an accepted webhook must fit, with its envelope, in one
/// Kafka message (1,000,000 bytes by default).
pub const MAX_RELAYABLE_BODY: usize = 900_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub http: HttpConfig,
    pub grpc: GrpcConfig,
    pub rate_limit: RateLimitConfig,
    pub mapping: MappingClientConfig,
    pub database: DatabaseConfig,
    pub kafka: KafkaConfig,
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    pub inbox: InboxConfig,
    pub webhooks: WebhooksConfig,
    pub secrets: SecretsConfig,
    pub qbo: QboWebhooksConfig,
    pub limits: LimitsConfig,
}

/// Abuse limits in front of the edge (see `ingest::guard`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub per_ip_per_second: u32,
    pub per_ip_burst: u32,
    pub max_in_flight: usize,
    #[serde(with = "humantime_serde")]
    pub unknown_workspace_ttl: Duration,
    /// How long a workspace's projection row and credentials are reused from memory.
    #[serde(with = "humantime_serde")]
    pub auth_cache_ttl: Duration,
}

/// QBO webhooks: the app's verifier tokens (Intuit's developer portal). Several may be listed
/// while one is rotated out.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QboWebhooksConfig {
    pub verifier_tokens: Vec<String>,
}

impl std::fmt::Debug for QboWebhooksConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QboWebhooksConfig")
            .field("verifier_tokens", &self.verifier_tokens.len())
            .finish()
    }
}

/// How Fyle webhooks are authenticated (see `ingest::auth`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// The base URL Fyle reaches ingest at; `GetWebhookEndpoint` builds the URL from it.
    pub public_url: String,
    /// The mode of a workspace that has none set yet: `url_token`, `hmac` or `org_check_only`.
    pub default_mode: String,
    /// How long a rotated-out token or secret stays valid.
    #[serde(with = "humantime_serde")]
    pub secret_overlap: Duration,
    /// How far a Standard Webhooks `webhook-timestamp` may be from now.
    #[serde(with = "humantime_serde")]
    pub signature_tolerance: Duration,
}

impl WebhooksConfig {
    pub fn default_mode(&self) -> Result<AuthMode, ConfigError> {
        AuthMode::parse(&self.default_mode).ok_or_else(|| {
            ConfigError::invalid(
                "webhooks.default_mode",
                "must be url_token, hmac or org_check_only",
            )
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxConfig {
    /// Inbox rows (bodies and dedupe keys) older than this are deleted by the retention job.
    #[serde(with = "humantime_serde")]
    pub keep_for: Duration,
    /// Group-commit writers storing versioned deliveries (see `ingest::store`).
    pub writers: usize,
    /// The most deliveries one group-commit statement stores.
    pub max_batch: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub per_workspace_per_second: u32,
    pub burst: u32,
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.platform().validate()?;
        self.secrets.keyring()?;
        if self.limits.per_ip_per_second == 0 || self.limits.max_in_flight == 0 {
            return Err(ConfigError::invalid(
                "limits",
                "per_ip_per_second and max_in_flight must be at least 1",
            ));
        }
        self.webhooks.default_mode()?;
        if !(self.webhooks.public_url.starts_with("http://")
            || self.webhooks.public_url.starts_with("https://"))
        {
            return Err(ConfigError::invalid(
                "webhooks.public_url",
                "must be an http(s):// URL",
            ));
        }
        if self.inbox.writers == 0 || self.inbox.max_batch == 0 || self.inbox.max_batch > 1000 {
            return Err(ConfigError::invalid(
                "inbox",
                "writers must be at least 1 and max_batch between 1 and 1000",
            ));
        }
        if self.inbox.keep_for < Duration::from_secs(3600) {
            return Err(ConfigError::invalid(
                "inbox.keep_for",
                "must be at least 1h (the dedupe window of unversioned bodies)",
            ));
        }
        if self.http.max_body_bytes > MAX_RELAYABLE_BODY {
            return Err(ConfigError::invalid(
                "http.max_body_bytes",
                format!(
                    "must be at most {MAX_RELAYABLE_BODY}: a relayed webhook must fit Kafka's 1 MB message limit"
                ),
            ));
        }
        if self.rate_limit.per_workspace_per_second == 0 {
            return Err(ConfigError::invalid(
                "rate_limit.per_workspace_per_second",
                "must be at least 1",
            ));
        }
        if self.rate_limit.burst < self.rate_limit.per_workspace_per_second {
            return Err(ConfigError::invalid(
                "rate_limit.burst",
                "must be at least per_workspace_per_second",
            ));
        }
        Ok(())
    }
}

impl ServiceConfig for Config {
    const DEFAULTS: &'static str = include_str!("../config/defaults.toml");
    const ENV_PREFIX: &'static str = "INGEST";

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
        assert_eq!(config.database.schema, "ingest");
    }

    #[test]
    fn a_burst_below_the_rate_is_refused_by_name() {
        let err = Config::from_env_pairs(vec![("INGEST__RATE_LIMIT__BURST".into(), "1".into())])
            .expect_err("invalid");
        assert!(err.to_string().contains("rate_limit.burst"), "{err}");
    }
}
