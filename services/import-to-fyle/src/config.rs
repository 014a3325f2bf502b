//! import-to-fyle's configuration (see `config/defaults.toml`).

use attrsync_config::{ConfigError, GrpcConfig, Sources, TelemetryConfig, Validate};
use serde::Deserialize;

pub const DEFAULTS: &str = include_str!("../config/defaults.toml");
pub const ENV_PREFIX: &str = "IMPORT_TO_FYLE";

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

impl Config {
    pub fn load(args: impl IntoIterator<Item = String>) -> Result<Self, ConfigError> {
        attrsync_config::load(Sources::new(DEFAULTS, ENV_PREFIX).with_args(args))
    }

    pub fn from_env_pairs(pairs: Vec<(String, String)>) -> Result<Self, ConfigError> {
        attrsync_config::load(Sources::new(DEFAULTS, ENV_PREFIX).with_env(pairs))
    }
}
