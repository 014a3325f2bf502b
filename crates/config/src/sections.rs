//! Configuration sections every service shares.

use std::{net::SocketAddr, time::Duration};

use serde::Deserialize;

use crate::ConfigError;

/// An HTTP listener (ingest's webhook edge).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: String,
    /// Requests with a larger body are refused with 413 before they are read.
    pub max_body_bytes: usize,
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

fn parse_addr(value: &str, key: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        ConfigError::invalid(
            key,
            format!("`{value}` is not a socket address like 127.0.0.1:8080"),
        )
    })
}
