//! import-to-fyle's configuration (see `config/defaults.toml`).

use attrsync_config::{ConfigError, GrpcConfig, ServiceConfig, TelemetryConfig, Validate};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub grpc: GrpcConfig,
    pub telemetry: TelemetryConfig,
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.grpc.validate("grpc")?;
        self.telemetry.validate("telemetry")
    }
}

impl ServiceConfig for Config {
    const DEFAULTS: &'static str = include_str!("../config/defaults.toml");
    const ENV_PREFIX: &'static str = "IMPORT_TO_FYLE";
}
