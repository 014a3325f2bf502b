//! fyle-sync's configuration (see `config/defaults.toml` for every key and its default).

use std::time::Duration;

use attrsync_config::{
    ConfigError, DatabaseConfig, GrpcConfig, HealthConfig, HttpConfig, KafkaConfig,
    MappingClientConfig, Platform, RetentionConfig, ServiceConfig, TelemetryConfig, Validate,
    platform_sections,
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
        self.platform().validate()
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
    }
}
