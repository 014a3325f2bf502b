//! PostgreSQL access for the services.
//!
//! Each service owns one schema (its name is configuration, `database.schema`) and reaches its
//! tables through connections whose `search_path` is that schema, so a service cannot read
//! another service's tables by accident and every service's migrations — including diesel's
//! own bookkeeping table — stay inside its schema. Pools are diesel-async over tokio-postgres
//! (no libpq).
//!
//! - [`connect`]: creates the schema if needed and returns a pool bound to it.
//! - [`migrate`]: runs a service's embedded migrations into its schema, serialised across
//!   replicas by an advisory lock.
//! - [`outbox`]: the transactional outbox every producing service uses.
//! - [`lease`]: one holder at a time per name across replicas, expiring with a crashed holder.
//! - [`prepared`]: hand-written SQL that stays prepared on its connection.
//! - [`shared_rate`]: a token bucket every replica obeys together (a partner API's limit).
//! - [`shared_permits`]: a cap on requests in flight every replica obeys together, paced by
//!   that bucket.
//! - [`testing`]: a database per test, cloned from a migrated template.

pub mod lease;
pub mod outbox;
pub mod prepared;
pub mod shared_permits;
pub mod shared_rate;
pub mod testing;

use std::time::Duration;

use attrsync_config::DatabaseConfig;
use diesel::{migration::MigrationSource, pg::Pg, sql_query, sql_types::BigInt};
use diesel_async::{
    AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl,
    pooled_connection::{AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod, deadpool},
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

pub use diesel_async;

/// The tables every service has in its own schema (outbox, outbox_rejected,
/// processed_events, workspace_projection), applied by [`migrate`] before the service's own.
pub static PLATFORM_MIGRATIONS: EmbeddedMigrations =
    embed_migrations!("../../migrations/_platform");

/// A pool of connections bound to one service's schema.
pub type Pool = deadpool::Pool<AsyncPgConnection>;
/// One pooled connection.
pub type PooledConnection = deadpool::Object<AsyncPgConnection>;

/// A database operation that failed. The `Display` text may contain the server's words: log
/// it, never send it to a client (callers answer with [`DbError::class`] instead).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database URL is invalid: {0}")]
    Url(String),
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("connection pool: {0}")]
    Pool(String),
    #[error("the database did not answer within {0:?}")]
    Timeout(Duration),
    #[error("migrations failed: {0}")]
    Migration(String),
}

/// What a caller does about a failed database operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The database could not do it now (down, restarting, overloaded, a timeout, a
    /// serialization conflict): the same statement may succeed later. Edges answer 503 with
    /// `Retry-After`; consumers wait and retry without limit.
    Retryable,
    /// The database refused this statement for what it contains (SQLSTATE class 23, integrity
    /// violation): repeating it cannot succeed.
    Permanent,
}

impl DbError {
    pub fn class(&self) -> Failure {
        match self {
            DbError::Connect(_) | DbError::Pool(_) | DbError::Timeout(_) => Failure::Retryable,
            DbError::Query(e) => classify(e),
            DbError::Url(_) | DbError::Migration(_) => Failure::Permanent,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.class() == Failure::Retryable
    }
}

/// Classifies a query error by the SQLSTATE the driver reports, never by message text.
///
/// diesel-async 0.9 hands over the SQLSTATE only as a [`DatabaseErrorKind`] for the class-23
/// (integrity) codes it knows and for 40001/25006; every other server error arrives as
/// `Unknown` with the code dropped. So class 23 is permanent and everything else — connection
/// exceptions (08), shutdowns (57P), resources (53), conflicts (40), read-only (25006),
/// timeouts and any unknown code — is retryable: an error we cannot name is treated as an
/// outage, never as a reason to drop a message. Data exceptions (class 22) cannot be told
/// apart here, so inputs are validated before they reach SQL (e.g. ingest refuses NUL
/// characters), and a class-22 error that slips through is retried — visible as a stalled
/// partition in health — rather than lost.
///
/// [`DatabaseErrorKind`]: diesel::result::DatabaseErrorKind
pub fn classify(error: &diesel::result::Error) -> Failure {
    use diesel::result::{DatabaseErrorKind as Kind, Error};
    match error {
        Error::DatabaseError(
            Kind::UniqueViolation
            | Kind::ForeignKeyViolation
            | Kind::NotNullViolation
            | Kind::CheckViolation
            | Kind::RestrictViolation
            | Kind::ExclusionViolation,
            _,
        ) => Failure::Permanent,
        Error::DatabaseError(_, _)
        | Error::BrokenTransactionManager
        | Error::RollbackErrorOnCommit { .. } => Failure::Retryable,
        // Our own statements or rows that cannot be built or read: a bug or bad data, which a
        // retry of the same message will not fix.
        Error::QueryBuilderError(_)
        | Error::DeserializationError(_)
        | Error::SerializationError(_)
        | Error::InvalidCString(_)
        | Error::NotFound
        | Error::RollbackTransaction
        | Error::AlreadyInTransaction
        | Error::NotInTransaction => Failure::Permanent,
        _ => Failure::Retryable,
    }
}

impl From<deadpool::PoolError> for DbError {
    fn from(e: deadpool::PoolError) -> Self {
        DbError::Pool(e.to_string())
    }
}

pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// Runs `operation` with the configured deadline; a database that stops answering becomes
/// [`DbError::Timeout`] (retryable) instead of a hung caller. A connection abandoned mid-
/// transaction this way is discarded by the pool, never reused.
pub async fn with_deadline<T, E>(
    deadline: Duration,
    operation: impl Future<Output = std::result::Result<T, E>>,
) -> Result<T>
where
    DbError: From<E>,
{
    match tokio::time::timeout(deadline, operation).await {
        Ok(outcome) => outcome.map_err(DbError::from),
        Err(_) => Err(DbError::Timeout(deadline)),
    }
}

/// `url` with the connection's `search_path` set to `schema`.
pub fn url_with_schema(url: &str, schema: &str) -> Result<String> {
    let mut parsed = url::Url::parse(url).map_err(|e| DbError::Url(e.to_string()))?;
    // tokio-postgres percent-decodes parameters but does not read `+` as a space, so the
    // query is written by hand rather than form-encoded.
    // Keep any `options` the operator set (e.g. `-c statement_timeout=…`), adding ours.
    let mut options = String::new();
    let mut query: Vec<String> = Vec::new();
    for pair in parsed
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.strip_prefix("options=") {
            Some(existing) => options = without_search_path(existing),
            None => query.push(pair.to_owned()),
        }
    }
    query.push(format!("options={options}-c%20search_path%3D{schema}"));
    parsed.set_query(Some(&query.join("&")));
    Ok(parsed.into())
}

/// The (percent-encoded) `options` value without any `-c search_path=…`, ready for more.
fn without_search_path(options: &str) -> String {
    let tokens: Vec<&str> = options.split("%20").filter(|t| !t.is_empty()).collect();
    let mut kept = String::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i] == "-c"
            && tokens
                .get(i + 1)
                .is_some_and(|t| t.starts_with("search_path%3D"))
        {
            i += 2;
            continue;
        }
        kept.push_str(tokens[i]);
        kept.push_str("%20");
        i += 1;
    }
    kept
}

/// `url` pointing at another database on the same server.
pub fn url_with_database(url: &str, database: &str) -> Result<String> {
    let mut parsed = url::Url::parse(url).map_err(|e| DbError::Url(e.to_string()))?;
    parsed.set_path(&format!("/{database}"));
    Ok(parsed.into())
}

/// The URL pooled connections use: the service's schema as `search_path`, the query timeout
/// as the server-side `statement_timeout`, and `plan_cache_mode=force_generic_plan`.
///
/// The statements this system runs often are prepared once per connection, and their plans do
/// not depend on their parameters' values (key lookups, `unnest` of arrays probing unique
/// indexes). Left to choose, the server re-planned many of them at every execution: planning
/// was a sixth of the database's CPU at 200 webhooks/s (docs/benchmarks.md, fyle-sync).
pub fn pool_url(config: &DatabaseConfig) -> Result<String> {
    let with_schema = url_with_schema(&config.url, &config.schema)?;
    let millis = config.query_timeout.as_millis();
    Ok(with_schema.replacen(
        "options=",
        &format!(
            "options=-c%20statement_timeout%3D{millis}%20-c%20plan_cache_mode%3Dforce_generic_plan%20"
        ),
        1,
    ))
}

/// Creates the service's schema if it does not exist and returns a pool bound to it, with the
/// configured connect and checkout timeouts (a caller never waits longer for a connection).
pub async fn connect(config: &DatabaseConfig) -> Result<Pool> {
    with_deadline(
        config.connect_timeout,
        ensure_schema(&config.url, &config.schema),
    )
    .await?;
    // No `SELECT 1` on every checkout (diesel-async's default): a connection the server closed
    // is known closed (`is_broken`) and dropped, and one that fails mid-use fails that call
    // with a retryable error. The round trip saved is one of the few a webhook costs.
    let mut manager_config = ManagerConfig::default();
    manager_config.recycling_method = RecyclingMethod::Fast;
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
        pool_url(config)?,
        manager_config,
    );
    deadpool::Pool::builder(manager)
        .max_size(config.pool_size)
        // The most recently returned connection first: a light load keeps reusing the same
        // few server processes (warm caches, fewer processes to wake) instead of cycling
        // through the whole pool. Connections left idle at the bottom are still watched by
        // TCP keepalives (tokio-postgres's default), and one found closed fails its call
        // retryably.
        .queue_mode(::deadpool::managed::QueueMode::Lifo)
        .runtime(::deadpool::Runtime::Tokio1)
        .create_timeout(Some(config.connect_timeout))
        .wait_timeout(Some(config.checkout_timeout))
        .recycle_timeout(Some(config.connect_timeout))
        .build()
        .map_err(|e| DbError::Pool(e.to_string()))
}

async fn ensure_schema(url: &str, schema: &str) -> Result<()> {
    let mut conn = AsyncPgConnection::establish(url).await?;
    // The schema name was validated as a plain identifier by the configuration.
    let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
    match sql_query(&create).execute(&mut conn).await {
        // Two replicas creating it at the same moment: one wins, the other sees a duplicate.
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(()),
        other => other.map(drop).map_err(DbError::from),
    }
}

/// Runs the pending [`PLATFORM_MIGRATIONS`], then the service's own `migrations`, into
/// `schema`. Replicas starting together take turns.
pub async fn migrate(
    url: &str,
    schema: &str,
    migrations: &'static EmbeddedMigrations,
) -> Result<Vec<String>> {
    ensure_schema(url, schema).await?;
    let mut conn = AsyncPgConnection::establish(&url_with_schema(url, schema)?).await?;
    let lock_key = advisory_key(schema);
    sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(lock_key)
        .execute(&mut conn)
        .await?;
    let outcome = tokio::task::spawn_blocking(move || {
        let mut harness = AsyncMigrationHarness::new(conn);
        let mut run = |source: &'static EmbeddedMigrations| {
            harness
                .run_pending_migrations(StaticMigrations(source))
                .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
                .map_err(|e| DbError::Migration(e.to_string()))
        };
        let applied = run(&PLATFORM_MIGRATIONS).and_then(|mut platform| {
            platform.extend(run(migrations)?);
            Ok(platform)
        });
        (harness.into_inner(), applied)
    })
    .await
    .map_err(|e| DbError::Migration(format!("migration task panicked: {e}")))?;
    let (mut conn, applied) = outcome;
    sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(lock_key)
        .execute(&mut conn)
        .await?;
    let applied = applied?;
    if !applied.is_empty() {
        tracing::info!(schema, ?applied, "migrations applied");
    }
    Ok(applied)
}

/// Embedded migrations by reference (diesel's type is neither `Clone` nor `Copy`).
struct StaticMigrations(&'static EmbeddedMigrations);

impl MigrationSource<Pg> for StaticMigrations {
    fn migrations(
        &self,
    ) -> diesel::migration::Result<Vec<Box<dyn diesel::migration::Migration<Pg>>>> {
        MigrationSource::<Pg>::migrations(self.0)
    }
}

/// A stable advisory-lock key for a name (FNV-1a, so it never changes between builds).
pub fn advisory_key(name: &str) -> i64 {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Checks the database answers (for health endpoints).
pub async fn ping(pool: &Pool) -> Result<()> {
    let mut conn = pool.get().await?;
    sql_query("SELECT 1").execute(&mut conn).await?;
    Ok(())
}

/// `value` as a literal inside a `LIKE` / `ILIKE` pattern (`\`, `%` and `_` escaped), for
/// filters such as "value contains".
pub fn escape_like(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_set_through_the_options_parameter() {
        let url = url_with_schema(
            "postgres://postgres@127.0.0.1:54329/app?sslmode=disable",
            "fyle_sync",
        )
        .expect("url");
        assert_eq!(
            url,
            "postgres://postgres@127.0.0.1:54329/app?sslmode=disable&options=-c%20search_path%3Dfyle_sync"
        );
        let again = url_with_schema(&url, "mapping").expect("url");
        assert!(
            again.ends_with("sslmode=disable&options=-c%20search_path%3Dmapping"),
            "{again}"
        );
        let with_timeout = url_with_schema(
            "postgres://p@h/app?options=-c%20statement_timeout%3D5000",
            "mapping",
        )
        .expect("url");
        assert_eq!(
            with_timeout,
            "postgres://p@h/app?options=-c%20statement_timeout%3D5000%20-c%20search_path%3Dmapping"
        );
    }

    #[test]
    fn database_can_be_swapped() {
        let url =
            url_with_database("postgres://postgres@127.0.0.1:54329/postgres", "t1").expect("url");
        assert_eq!(url, "postgres://postgres@127.0.0.1:54329/t1");
    }

    #[test]
    fn advisory_keys_are_the_published_fnv1a_64_values() {
        // FNV-1a 64 reference values (computed independently: offset basis 0xcbf29ce484222325,
        // prime 0x100000001b3), so a change of hash would show here and not only in locks.
        assert_eq!(advisory_key("") as u64, 0xcbf2_9ce4_8422_2325);
        assert_eq!(advisory_key("a") as u64, 0xaf63_dc4c_8601_ec8c);
        assert_eq!(advisory_key("foobar") as u64, 0x8594_4171_f739_67e8);
    }

    #[test]
    fn only_integrity_violations_are_permanent() {
        use diesel::result::{DatabaseErrorKind as Kind, Error};
        let db = |kind| Error::DatabaseError(kind, Box::new(String::from("server text")));
        for kind in [
            Kind::UniqueViolation,
            Kind::ForeignKeyViolation,
            Kind::NotNullViolation,
            Kind::CheckViolation,
        ] {
            assert_eq!(classify(&db(kind)), Failure::Permanent);
        }
        for kind in [
            Kind::Unknown,
            Kind::ClosedConnection,
            Kind::UnableToSendCommand,
            Kind::SerializationFailure,
            Kind::ReadOnlyTransaction,
        ] {
            assert_eq!(classify(&db(kind)), Failure::Retryable);
        }
        assert!(DbError::Timeout(Duration::from_secs(1)).is_retryable());
        assert!(DbError::Pool("timed out".into()).is_retryable());
    }

    #[test]
    fn pooled_connections_carry_the_statement_timeout() {
        let config = DatabaseConfig {
            url: "postgres://p@h/app".into(),
            schema: "ingest".into(),
            pool_size: 1,
            connect_timeout: Duration::from_secs(1),
            checkout_timeout: Duration::from_secs(1),
            query_timeout: Duration::from_millis(2500),
            first_statistics_interval: Duration::ZERO,
        };
        assert_eq!(
            pool_url(&config).expect("url"),
            "postgres://p@h/app?options=-c%20statement_timeout%3D2500%20\
             -c%20plan_cache_mode%3Dforce_generic_plan%20-c%20search_path%3Dingest"
        );
    }
}
