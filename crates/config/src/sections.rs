//! Configuration sections every service shares.

use std::{net::SocketAddr, time::Duration};

use serde::Deserialize;

use crate::ConfigError;

/// The service's HTTP listener: `/healthz`, `/readyz` and `/metrics` on every service, and
/// ingest's webhook edge.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: String,
    /// Requests with a larger body are refused with 413 before they are read.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
}

fn default_max_body() -> usize {
    65_536
}

impl HttpConfig {
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        parse_addr(&self.listen, &format!("{key}.listen"))?;
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::invalid(
                format!("{key}.max_body_bytes"),
                "must be at least 1024",
            ));
        }
        Ok(())
    }

    pub fn addr(&self) -> Result<SocketAddr, ConfigError> {
        parse_addr(&self.listen, "http.listen")
    }
}

/// A gRPC listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcConfig {
    pub listen: String,
}

impl GrpcConfig {
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        parse_addr(&self.listen, &format!("{key}.listen")).map(drop)
    }

    pub fn addr(&self) -> Result<SocketAddr, ConfigError> {
        parse_addr(&self.listen, "grpc.listen")
    }
}

/// The service's PostgreSQL database and the schema it owns.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: String,
    /// The service's own schema; its migrations and tables live there and nowhere else.
    pub schema: String,
    pub pool_size: usize,
    /// How long opening a connection may take before the caller gets "unavailable".
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long a caller waits for a free pooled connection.
    #[serde(default = "default_checkout_timeout", with = "humantime_serde")]
    pub checkout_timeout: Duration,
    /// How long one statement or transaction may take; enforced by the server
    /// (`statement_timeout`) and by the caller, so a database that stops answering cannot hang
    /// a request or a consumer.
    #[serde(default = "default_query_timeout", with = "humantime_serde")]
    pub query_timeout: Duration,
    /// How often the service looks for tables of its schema that hold rows but were never
    /// analysed, and analyses them (`attrsync_runtime::statistics`); `0s` turns it off.
    #[serde(
        default = "default_first_statistics_interval",
        with = "humantime_serde"
    )]
    pub first_statistics_interval: Duration,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_checkout_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_query_timeout() -> Duration {
    Duration::from_secs(15)
}
fn default_first_statistics_interval() -> Duration {
    Duration::from_secs(2)
}

impl DatabaseConfig {
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if !(self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")) {
            return Err(ConfigError::invalid(
                format!("{key}.url"),
                "must be a postgres:// URL",
            ));
        }
        let valid_schema = !self.schema.is_empty()
            && self
                .schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !self.schema.starts_with(|c: char| c.is_ascii_digit());
        if !valid_schema {
            return Err(ConfigError::invalid(
                format!("{key}.schema"),
                "must be a lower-case SQL identifier",
            ));
        }
        if self.pool_size == 0 {
            return Err(ConfigError::invalid(
                format!("{key}.pool_size"),
                "must be at least 1",
            ));
        }
        for (name, value) in [
            ("connect_timeout", self.connect_timeout),
            ("checkout_timeout", self.checkout_timeout),
            ("query_timeout", self.query_timeout),
        ] {
            if value < Duration::from_millis(10) {
                return Err(ConfigError::invalid(
                    format!("{key}.{name}"),
                    "must be at least 10ms",
                ));
            }
        }
        Ok(())
    }
}

/// Apache Kafka.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    pub bootstrap: String,
    /// Prepended to every topic name (tests isolate themselves with it; empty in production).
    #[serde(default)]
    pub topic_prefix: String,
    /// The consumer group of this service.
    pub group_id: String,
    /// Partitions for topics this service creates at start-up.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    #[serde(default = "default_replication")]
    pub replication_factor: i32,
    /// Attempts of a failing message before it goes to `<topic>.dlq`.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_backoff", with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// The most messages of one partition handed to a handler at once (one transaction for
    /// the idempotent handlers).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
}

fn default_max_batch() -> usize {
    200
}

fn default_partitions() -> i32 {
    3
}
fn default_replication() -> i32 {
    1
}
fn default_attempts() -> u32 {
    5
}
fn default_backoff() -> Duration {
    Duration::from_millis(200)
}

impl KafkaConfig {
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if self.bootstrap.trim().is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.bootstrap"),
                "must not be empty",
            ));
        }
        if self.group_id.trim().is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.group_id"),
                "must not be empty",
            ));
        }
        if self.partitions < 1 {
            return Err(ConfigError::invalid(
                format!("{key}.partitions"),
                "must be at least 1",
            ));
        }
        if self.replication_factor < 1 {
            return Err(ConfigError::invalid(
                format!("{key}.replication_factor"),
                "must be at least 1",
            ));
        }
        if self.max_batch == 0 {
            return Err(ConfigError::invalid(
                format!("{key}.max_batch"),
                "must be at least 1",
            ));
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::invalid(
                format!("{key}.max_attempts"),
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// The full name of a topic, with this deployment's prefix.
    pub fn topic(&self, name: &str) -> String {
        format!("{}{}", self.topic_prefix, name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Logs and traces.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// An `EnvFilter` directive, e.g. `info,rdkafka=warn`; `RUST_LOG` wins when set.
    pub log_filter: String,
    /// OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`; traces are exported only when set.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
}

impl TelemetryConfig {
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if let Some(endpoint) = &self.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(ConfigError::invalid(
                format!("{key}.otlp_endpoint"),
                "must be an http(s):// URL",
            ));
        }
        Ok(())
    }
}

/// When a service reports itself NOT_SERVING (gRPC health, `/readyz`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// A consumer holding work (a message in hand or a paused partition) that has finished
    /// nothing for this long is stalled.
    #[serde(default = "default_stall_after", with = "humantime_serde")]
    pub consumer_stalled_after: Duration,
    /// An outbox relay failing for this long is unhealthy.
    #[serde(default = "default_stall_after", with = "humantime_serde")]
    pub relay_failing_after: Duration,
}

fn default_stall_after() -> Duration {
    Duration::from_secs(30)
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            consumer_stalled_after: default_stall_after(),
            relay_failing_after: default_stall_after(),
        }
    }
}

/// Pruning of the tables every service shares (and ingest's inbox).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How often the retention job runs.
    #[serde(default = "default_retention_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// `processed_events` rows older than this are deleted. Keep it at least the retention of
    /// the topics the service consumes (Kafka's default: 7 days), or a redelivery older than
    /// the row would be applied again.
    #[serde(default = "default_processed_events", with = "humantime_serde")]
    pub processed_events: Duration,
}

fn default_true() -> bool {
    true
}
fn default_retention_interval() -> Duration {
    Duration::from_secs(600)
}
fn default_processed_events() -> Duration {
    Duration::from_secs(8 * 24 * 3600)
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: default_retention_interval(),
            processed_events: default_processed_events(),
        }
    }
}

impl RetentionConfig {
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if self.interval < Duration::from_millis(100) {
            return Err(ConfigError::invalid(
                format!("{key}.interval"),
                "must be at least 100ms",
            ));
        }
        Ok(())
    }
}

/// Where mapping's gRPC API is (every service but mapping asks it about workspaces its
/// projection does not have yet).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingClientConfig {
    pub endpoint: String,
}

impl MappingClientConfig {
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err(ConfigError::invalid(
                format!("{key}.endpoint"),
                "must be an http(s):// URL",
            ));
        }
        Ok(())
    }
}

/// The sections every service has, borrowed from its configuration, for the shared start-up
/// path (`attrsync_runtime`).
#[derive(Debug, Clone, Copy)]
pub struct Platform<'a> {
    pub grpc: &'a GrpcConfig,
    pub http: &'a HttpConfig,
    pub database: &'a DatabaseConfig,
    pub kafka: &'a KafkaConfig,
    pub telemetry: &'a TelemetryConfig,
    pub health: &'a HealthConfig,
    pub retention: &'a RetentionConfig,
    /// `None` for mapping itself.
    pub mapping: Option<&'a MappingClientConfig>,
}

impl Platform<'_> {
    /// Validates every shared section, naming keys by their section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.grpc.validate("grpc")?;
        self.http.validate("http")?;
        self.database.validate("database")?;
        self.kafka.validate("kafka")?;
        self.telemetry.validate("telemetry")?;
        self.retention.validate("retention")?;
        match self.mapping {
            Some(mapping) => mapping.validate("mapping"),
            None => Ok(()),
        }
    }
}

fn parse_addr(value: &str, key: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        ConfigError::invalid(
            key,
            format!("`{value}` is not a socket address like 127.0.0.1:8080"),
        )
    })
}

/// Keys that seal secrets at rest (AES-256-GCM, [`attrsync_core::sealed`]): `keys` maps a key id
/// to 32 bytes of base64; new secrets are sealed with `active_key`, old ones open with the key
/// they name, so keys rotate by adding one. `Debug` shows key ids only.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    pub active_key: String,
    pub keys: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Debug for SecretsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsConfig")
            .field("active_key", &self.active_key)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SecretsConfig {
    /// The keyring, or an error naming the `secrets` section.
    pub fn keyring(&self) -> Result<attrsync_core::sealed::Keyring, ConfigError> {
        attrsync_core::sealed::Keyring::new(&self.active_key, &self.keys)
            .map_err(|e| ConfigError::invalid("secrets", e.to_string()))
    }
}

/// The `[reconcile]` section of a sync service (fyle-sync, qbo-sync): scheduled rounds that
/// reconcile what webhooks should have brought, keep the 24-hour rule for the rest, and judge
/// webhook health ([`attrsync_core::webhook_health`]). Each service documents its defaults in
/// its `defaults.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileConfig {
    /// Off: no round is scheduled (pulls happen only on request).
    pub enabled: bool,
    /// How often the scheduler looks for due rounds.
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    /// A HEALTHY workspace's interval between rounds.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A DEGRADED workspace's: polling takes over at this shorter interval.
    #[serde(with = "humantime_serde")]
    pub degraded_interval: Duration,
    /// Objects changed more recently than this before a round are left to the next one, so a
    /// webhook still in flight is not counted as missed.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// A HEALTHY workspace turns DEGRADED when one window misses more webhooks than this.
    pub degrade_above: u64,
    /// A DEGRADED workspace turns HEALTHY after this many consecutive clean windows.
    pub recover_after: u32,
}

impl ReconcileConfig {
    /// The health policy these settings describe.
    pub fn policy(&self) -> attrsync_core::webhook_health::HealthPolicy {
        attrsync_core::webhook_health::HealthPolicy {
            degrade_above: self.degrade_above,
            recover_after: self.recover_after,
        }
    }

    /// The round intervals these settings describe.
    pub fn schedule(&self) -> attrsync_core::webhook_health::Schedule {
        attrsync_core::webhook_health::Schedule {
            interval: self.interval,
            degraded_interval: self.degraded_interval,
        }
    }

    /// Positive intervals, polling while DEGRADED no slower than the reconcile, recovery after
    /// at least one clean window; errors name the `reconcile.*` key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("reconcile.tick", self.tick),
            ("reconcile.interval", self.interval),
            ("reconcile.degraded_interval", self.degraded_interval),
        ] {
            if value.is_zero() {
                return Err(ConfigError::invalid(key, "must be positive"));
            }
        }
        if self.degraded_interval > self.interval {
            return Err(ConfigError::invalid(
                "reconcile.degraded_interval",
                "must not be longer than reconcile.interval (polling takes over more often)",
            ));
        }
        if self.recover_after == 0 {
            return Err(ConfigError::invalid(
                "reconcile.recover_after",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}
