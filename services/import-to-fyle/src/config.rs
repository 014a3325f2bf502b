//! import-to-fyle's configuration (see `config/defaults.toml` for every key and its default).

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
    pub fyle_sync: FyleSyncClientConfig,
    pub fyle: FyleConfig,
    pub runs: RunsConfig,
    pub schedule: ScheduleConfig,
}

/// fyle-sync's gRPC endpoint: access tokens (`GetAccessToken`), Fyle's current values
/// (`ListExpenseAttributes`) and the re-sync after a post (`SyncDimensions`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FyleSyncClientConfig {
    pub endpoint: String,
}

/// How hard import-to-fyle may use Fyle.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FyleConfig {
    /// Requests per second per org, paced by the PostgreSQL bucket `fyle:<org>`.
    pub requests_per_second: f64,
    /// Whole-request timeout of one Fyle call.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Attempts per call (429, 5xx and transport failures are retried with backoff).
    pub max_attempts: u32,
}

/// The import schedule (#61): see `schedule`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Every imported field of a workspace is requested this often (the incumbent's 24 hours).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How often the scheduler looks for settings changes and due schedules.
    #[serde(with = "humantime_serde")]
    pub scan: Duration,
}

/// Import runs: see `run` and `requests`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsConfig {
    /// A scheduled or manual (unforced) run is skipped if the last success is more recent than
    /// this (the incumbent's 30-minute rule, #35).
    #[serde(with = "humantime_serde")]
    pub min_interval: Duration,
    /// How long a run's lease lasts without renewal (a crashed run blocks no longer).
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Incremental runs read values changed this long before the last success's start too.
    #[serde(with = "humantime_serde")]
    pub incremental_overlap: Duration,
    /// Requests of one workspace × source field arriving within this window share one run.
    #[serde(with = "humantime_serde")]
    pub coalesce_window: Duration,
    /// A run that failed for a passing reason is retried after this, doubling up to `retry_max`.
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// `TriggerImport` with `wait` gives up waiting for a busy run after this.
    #[serde(with = "humantime_serde")]
    pub wait_timeout: Duration,
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.platform().validate()?;
        let endpoint = &self.fyle_sync.endpoint;
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(ConfigError::invalid(
                "fyle_sync.endpoint",
                "must be an http(s):// URL",
            ));
        }
        if !(self.fyle.requests_per_second.is_finite() && self.fyle.requests_per_second > 0.0) {
            return Err(ConfigError::invalid(
                "fyle.requests_per_second",
                "must be a positive number",
            ));
        }
        if self.fyle.max_attempts == 0 {
            return Err(ConfigError::invalid(
                "fyle.max_attempts",
                "must be at least 1",
            ));
        }
        if self.runs.lease_ttl < Duration::from_secs(3) {
            return Err(ConfigError::invalid(
                "runs.lease_ttl",
                "must be at least 3s (it is renewed every third of it)",
            ));
        }
        if self.runs.retry_initial.is_zero() || self.runs.retry_max < self.runs.retry_initial {
            return Err(ConfigError::invalid(
                "runs.retry_max",
                "retry_initial must be positive and at most retry_max",
            ));
        }
        if self.schedule.interval.is_zero() || self.schedule.scan.is_zero() {
            return Err(ConfigError::invalid(
                "schedule",
                "interval and scan must be more than zero",
            ));
        }
        Ok(())
    }
}

impl ServiceConfig for Config {
    const DEFAULTS: &'static str = include_str!("../config/defaults.toml");
    const ENV_PREFIX: &'static str = "IMPORT_TO_FYLE";

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
        assert_eq!(config.database.schema, "import_to_fyle");
        assert_eq!(config.runs.min_interval, Duration::from_secs(30 * 60));
        assert_eq!(config.schedule.interval, Duration::from_secs(24 * 60 * 60));
        assert_eq!(config.fyle_sync.endpoint, "http://127.0.0.1:50052");
    }
}
