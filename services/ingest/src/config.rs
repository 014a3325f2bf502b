//! ingest's configuration (see `config/defaults.toml` for every key and its default).

use std::time::Duration;

use attrsync_config::{
    ConfigError, DatabaseConfig, GrpcConfig, HealthConfig, HttpConfig, KafkaConfig,
    MappingClientConfig, Platform, RetentionConfig, ServiceConfig, TelemetryConfig, Validate,
    platform_sections,
};
use serde::Deserialize;

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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxConfig {
    /// Inbox rows (bodies and dedupe keys) older than this are deleted by the retention job.
    #[serde(with = "humantime_serde")]
    pub keep_for: Duration,
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
