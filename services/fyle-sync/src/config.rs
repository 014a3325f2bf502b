//! fyle-sync's configuration (see `config/defaults.toml` for every key and its default).

use attrsync_config::{
    ConfigError, DatabaseConfig, GrpcConfig, KafkaConfig, Sources, TelemetryConfig, Validate,
};
use serde::Deserialize;

pub const DEFAULTS: &str = include_str!("../config/defaults.toml");
pub const ENV_PREFIX: &str = "FYLE_SYNC";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub grpc: GrpcConfig,
    pub database: DatabaseConfig,
    pub kafka: KafkaConfig,
    pub telemetry: TelemetryConfig,
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.grpc.validate("grpc")?;
        self.database.validate("database")?;
        self.kafka.validate("kafka")?;
        self.telemetry.validate("telemetry")
    }
}

impl Config {
    /// Defaults, then the optional file, then the environment.
    pub fn load(args: impl IntoIterator<Item = String>) -> Result<Self, ConfigError> {
        attrsync_config::load(Sources::new(DEFAULTS, ENV_PREFIX).with_args(args))
    }

    /// Defaults with explicit overrides, ignoring the process environment (for tests).
    pub fn from_env_pairs(pairs: Vec<(String, String)>) -> Result<Self, ConfigError> {
        attrsync_config::load(Sources::new(DEFAULTS, ENV_PREFIX).with_env(pairs))
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
