//! Configuration: embedded, commented defaults → an optional TOML file → the environment.
//!
//! Every service declares one typed struct and a `defaults.toml` embedded in its binary, so a
//! service with no configuration at all starts with values that work against the local stack.
//! Layers, lowest first:
//!
//! 1. the service's embedded defaults;
//! 2. a TOML file named by `<PREFIX>_CONFIG_FILE` (or `--config FILE`), when given;
//! 3. `DATABASE_URL` and `KAFKA_BOOTSTRAP`, the two values every local tool already exports;
//! 4. `<PREFIX>__SECTION__KEY` environment variables (e.g. `INGEST__HTTP__LISTEN`).
//!
//! Failure policy: configuration is checked once, at start-up, and a bad value stops the
//! service with an error naming the key. Nothing re-reads configuration at run time.

mod sections;

use std::path::PathBuf;

pub use sections::{
    DatabaseConfig, GrpcConfig, HealthConfig, HttpConfig, KafkaConfig, LogFormat,
    MappingClientConfig, Platform, ReconcileConfig, RetentionConfig, SecretsConfig,
    TelemetryConfig,
};
use serde::de::DeserializeOwned;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration key `{key}` is invalid: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Checks that go beyond types (ranges, non-empty strings, URL shapes).
pub trait Validate {
    fn validate(&self) -> Result<(), ConfigError>;
}

/// A service's configuration type: its embedded defaults and its environment prefix give it
/// [`load`](ServiceConfig::load) (for `main`) and [`from_env_pairs`](ServiceConfig::from_env_pairs)
/// (for tests, which must not read the process environment).
pub trait ServiceConfig: DeserializeOwned + Validate + Sized {
    /// The embedded, commented `defaults.toml`.
    const DEFAULTS: &'static str;
    /// E.g. `INGEST`; variables look like `INGEST__HTTP__LISTEN`.
    const ENV_PREFIX: &'static str;

    /// Defaults, then the optional file (`--config` in `args`), then the environment.
    fn load(args: impl IntoIterator<Item = String>) -> Result<Self, ConfigError> {
        load(Sources::new(Self::DEFAULTS, Self::ENV_PREFIX).with_args(args))
    }

    /// Defaults with explicit overrides, ignoring the process environment.
    fn from_env_pairs(pairs: Vec<(String, String)>) -> Result<Self, ConfigError> {
        load(Sources::new(Self::DEFAULTS, Self::ENV_PREFIX).with_env(pairs))
    }

    /// The sections every service shares; write it with [`platform_sections!`].
    fn platform(&self) -> Platform<'_>;
}

/// The [`Platform`] of a configuration struct whose shared sections are the fields `grpc`,
/// `http`, `database`, `kafka`, `telemetry`, `health` and `retention` (and `mapping`, when
/// named: every service but mapping itself).
#[macro_export]
macro_rules! platform_sections {
    ($config:expr) => {
        $crate::platform_sections!(@build $config, None)
    };
    ($config:expr, mapping) => {
        $crate::platform_sections!(@build $config, Some(&$config.mapping))
    };
    (@build $config:expr, $mapping:expr) => {
        $crate::Platform {
            grpc: &$config.grpc,
            http: &$config.http,
            database: &$config.database,
            kafka: &$config.kafka,
            telemetry: &$config.telemetry,
            health: &$config.health,
            retention: &$config.retention,
            mapping: $mapping,
        }
    };
}

/// Where a service's configuration comes from.
#[derive(Debug, Clone)]
pub struct Sources<'a> {
    /// The embedded defaults (TOML).
    pub defaults: &'a str,
    /// Environment prefix, e.g. `INGEST`; variables look like `INGEST__HTTP__LISTEN`.
    pub env_prefix: &'a str,
    /// An explicit file, overriding `<PREFIX>_CONFIG_FILE`.
    pub file: Option<PathBuf>,
    /// Environment to read; `None` reads the process environment. Tests pass their own.
    pub env: Option<Vec<(String, String)>>,
}

impl<'a> Sources<'a> {
    pub fn new(defaults: &'a str, env_prefix: &'a str) -> Self {
        Self {
            defaults,
            env_prefix,
            file: None,
            env: None,
        }
    }

    /// Reads `--config FILE` from the command line, if present.
    pub fn with_args(mut self, args: impl IntoIterator<Item = String>) -> Self {
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "--config" {
                self.file = args.next().map(PathBuf::from);
            } else if let Some(path) = arg.strip_prefix("--config=") {
                self.file = Some(PathBuf::from(path));
            }
        }
        self
    }

    pub fn with_env(mut self, env: Vec<(String, String)>) -> Self {
        self.env = Some(env);
        self
    }
}

/// Loads and validates a service configuration.
pub fn load<T: DeserializeOwned + Validate>(sources: Sources<'_>) -> Result<T, ConfigError> {
    let env: Vec<(String, String)> = sources
        .env
        .clone()
        .unwrap_or_else(|| std::env::vars().collect());
    let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());

    let mut builder = config::Config::builder().add_source(config::File::from_str(
        sources.defaults,
        config::FileFormat::Toml,
    ));
    let file = sources
        .file
        .clone()
        .or_else(|| lookup(&format!("{}_CONFIG_FILE", sources.env_prefix)).map(PathBuf::from));
    if let Some(path) = file {
        builder = builder.add_source(
            config::File::from(path)
                .format(config::FileFormat::Toml)
                .required(true),
        );
    }

    // The shared variables apply only to services that have those sections at all.
    let defaults = config::Config::builder()
        .add_source(config::File::from_str(
            sources.defaults,
            config::FileFormat::Toml,
        ))
        .build()?;
    let mut shared = config::Map::new();
    if let Some(url) = lookup("DATABASE_URL").filter(|_| defaults.get_table("database").is_ok()) {
        shared.insert("DATABASE__URL".to_owned(), url);
    }
    if let Some(bootstrap) =
        lookup("KAFKA_BOOTSTRAP").filter(|_| defaults.get_table("kafka").is_ok())
    {
        shared.insert("KAFKA__BOOTSTRAP".to_owned(), bootstrap);
    }
    builder = builder.add_source(
        config::Environment::default()
            .separator("__")
            .source(Some(shared)),
    );

    let prefix = format!("{}__", sources.env_prefix);
    let prefixed: config::Map<String, String> = env
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(&prefix)
                .map(|rest| (rest.to_owned(), v.clone()))
        })
        .collect();
    builder = builder.add_source(
        config::Environment::default()
            .separator("__")
            .try_parsing(true)
            .source(Some(prefixed)),
    );

    let parsed: T = builder.build()?.try_deserialize()?;
    parsed.validate()?;
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Example {
        http: HttpConfig,
        database: DatabaseConfig,
        kafka: KafkaConfig,
        batch_size: u32,
    }

    impl Validate for Example {
        fn validate(&self) -> Result<(), ConfigError> {
            self.http.validate("http")?;
            self.database.validate("database")?;
            self.kafka.validate("kafka")?;
            if self.batch_size == 0 {
                return Err(ConfigError::invalid("batch_size", "must be at least 1"));
            }
            Ok(())
        }
    }

    const DEFAULTS: &str = r#"
        batch_size = 10
        [http]
        listen = "127.0.0.1:8080"
        max_body_bytes = 1048576
        [database]
        url = "postgres://postgres@127.0.0.1:54329/postgres"
        schema = "example"
        pool_size = 4
        [kafka]
        bootstrap = "127.0.0.1:61092"
        group_id = "example"
    "#;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_alone_are_a_valid_configuration() {
        let c: Example =
            load(Sources::new(DEFAULTS, "EX").with_env(vec![])).expect("defaults load");
        assert_eq!(c.batch_size, 10);
        assert_eq!(c.kafka.topic_prefix, "");
        assert_eq!(c.database.schema, "example");
    }

    #[test]
    fn shared_variables_and_prefixed_variables_override_in_order() {
        let c: Example = load(Sources::new(DEFAULTS, "EX").with_env(env(&[
            ("DATABASE_URL", "postgres://u@db:5432/x"),
            ("KAFKA_BOOTSTRAP", "k1:9092"),
            ("EX__KAFKA__BOOTSTRAP", "k2:9092"),
            ("EX__BATCH_SIZE", "25"),
            ("OTHER__BATCH_SIZE", "99"),
        ])))
        .expect("load");
        assert_eq!(c.database.url, "postgres://u@db:5432/x");
        assert_eq!(c.kafka.bootstrap, "k2:9092");
        assert_eq!(c.batch_size, 25);
    }

    #[test]
    fn a_bad_value_is_an_error_naming_the_key() {
        let err =
            load::<Example>(Sources::new(DEFAULTS, "EX").with_env(env(&[("EX__BATCH_SIZE", "0")])))
                .expect_err("must fail");
        assert_eq!(
            err.to_string(),
            "configuration key `batch_size` is invalid: must be at least 1"
        );

        let err = load::<Example>(
            Sources::new(DEFAULTS, "EX").with_env(env(&[("EX__HTTP__LISTEN", "nope")])),
        )
        .expect_err("must fail");
        assert!(err.to_string().contains("`http.listen`"), "{err}");

        let err = load::<Example>(
            Sources::new(DEFAULTS, "EX").with_env(env(&[("EX__BATCH_SIZE", "many")])),
        )
        .expect_err("must fail");
        assert!(err.to_string().contains("batch_size"), "{err}");
    }

    #[test]
    fn shared_variables_are_ignored_by_services_without_those_sections() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct GrpcOnly {
            http: HttpConfig,
        }
        impl Validate for GrpcOnly {
            fn validate(&self) -> Result<(), ConfigError> {
                Ok(())
            }
        }
        let defaults = "[http]\nlisten = \"127.0.0.1:1\"\nmax_body_bytes = 2048\n";
        let loaded: GrpcOnly = load(Sources::new(defaults, "G").with_env(env(&[
            ("DATABASE_URL", "postgres://x@y/z"),
            ("KAFKA_BOOTSTRAP", "k:1"),
        ])))
        .expect("shared variables do not break a service that has no database");
        assert_eq!(loaded.http.listen, "127.0.0.1:1");
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let mut sources = Sources::new(DEFAULTS, "EX").with_env(vec![]);
        sources.file = Some(PathBuf::from("/nonexistent/attrsync.toml"));
        assert!(load::<Example>(sources).is_err());
    }

    #[test]
    fn the_config_flag_is_read_from_arguments() {
        let s = Sources::new(DEFAULTS, "EX").with_args([
            "bin".to_owned(),
            "--config".to_owned(),
            "a.toml".to_owned(),
        ]);
        assert_eq!(s.file, Some(PathBuf::from("a.toml")));
    }
}
