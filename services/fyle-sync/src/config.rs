//! fyle-sync's configuration (see `config/defaults.toml` for every key and its default).

use attrsync_config::{
    ConfigError, DatabaseConfig, GrpcConfig, KafkaConfig, ServiceConfig, TelemetryConfig, Validate,
};
use serde::Deserialize;

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

impl ServiceConfig for Config {
    const DEFAULTS: &'static str = include_str!("../config/defaults.toml");
    const ENV_PREFIX: &'static str = "FYLE_SYNC";
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
