//! mapping's configuration (see `config/defaults.toml` for every key and its default).

use attrsync_config::{
    ConfigError, DatabaseConfig, GrpcConfig, HealthConfig, HttpConfig, KafkaConfig, Platform,
    RetentionConfig, ServiceConfig, TelemetryConfig, Validate, platform_sections,
};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub grpc: GrpcConfig,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub kafka: KafkaConfig,
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub retention: RetentionConfig,
    pub import_to_fyle: ImportToFyleClientConfig,
    pub fyle_sync: FyleSyncClientConfig,
    pub unmapped_cards: UnmappedCardsConfig,
}

/// fyle-sync's gRPC endpoint: Fyle access tokens (`GetAccessToken`) for mapping's own calls.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FyleSyncClientConfig {
    pub endpoint: String,
}

/// Reporting the unmapped-card count to Fyle's integration-settings service (#23; see
/// `unmapped_cards`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnmappedCardsConfig {
    /// Base URL of the integration-settings service (`PATCH {url}/integrations/`).
    pub url: String,
    /// The integration's name there.
    pub tpa_name: String,
    /// How often queued recounts are counted and due reports sent.
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    /// The wait after a first failed report, doubling per failure up to `retry_max`.
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
}

/// import-to-fyle's gRPC endpoint: a new custom mapping setting that imports is imported there
/// (`TriggerImport` with `wait`) before it is saved (#64).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportToFyleClientConfig {
    pub endpoint: String,
    /// How long a settings change waits for that import.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.platform().validate()?;
        let endpoint = &self.import_to_fyle.endpoint;
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(ConfigError::invalid(
                "import_to_fyle.endpoint",
                "must be an http(s):// URL",
            ));
        }
        for (key, url) in [
            ("fyle_sync.endpoint", &self.fyle_sync.endpoint),
            ("unmapped_cards.url", &self.unmapped_cards.url),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::invalid(key, "must be an http(s):// URL"));
            }
        }
        for (key, value) in [
            ("unmapped_cards.tick", self.unmapped_cards.tick),
            (
                "unmapped_cards.retry_initial",
                self.unmapped_cards.retry_initial,
            ),
        ] {
            if value.is_zero() {
                return Err(ConfigError::invalid(key, "must be more than zero"));
            }
        }
        if self.unmapped_cards.retry_max < self.unmapped_cards.retry_initial {
            return Err(ConfigError::invalid(
                "unmapped_cards.retry_max",
                "must be at least unmapped_cards.retry_initial",
            ));
        }
        if self.import_to_fyle.timeout.is_zero() {
            return Err(ConfigError::invalid(
                "import_to_fyle.timeout",
                "must be more than zero",
            ));
        }
        Ok(())
    }
}

impl ServiceConfig for Config {
    const DEFAULTS: &'static str = include_str!("../config/defaults.toml");
    const ENV_PREFIX: &'static str = "MAPPING";

    fn platform(&self) -> Platform<'_> {
        platform_sections!(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_are_valid() {
        let config = Config::from_env_pairs(vec![]).expect("defaults are valid");
        assert_eq!(config.database.schema, "mapping");
        assert_eq!(config.import_to_fyle.endpoint, "http://127.0.0.1:50054");
    }
}
