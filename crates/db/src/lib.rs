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
//! - [`testing`]: a database per test, cloned from a migrated template.

pub mod outbox;
pub mod testing;

use attrsync_config::DatabaseConfig;
use diesel::{migration::MigrationSource, pg::Pg, sql_query, sql_types::BigInt};
use diesel_async::{
    AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl,
    pooled_connection::{AsyncDieselConnectionManager, deadpool},
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

pub use diesel_async;

/// A pool of connections bound to one service's schema.
pub type Pool = deadpool::Pool<AsyncPgConnection>;
/// One pooled connection.
pub type PooledConnection = deadpool::Object<AsyncPgConnection>;

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
    #[error("migrations failed: {0}")]
    Migration(String),
}

impl DbError {
    /// Whether the database could not be reached (retrying later may succeed), as opposed to
    /// the database refusing this particular statement (bad data, a constraint), which a retry
    /// of the same statement will not fix.
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Connect(_) | DbError::Pool(_) => true,
            DbError::Query(e) => query_error_is_unavailable(e),
            DbError::Url(_) | DbError::Migration(_) => false,
        }
    }
}

/// See [`DbError::is_unavailable`].
pub fn query_error_is_unavailable(error: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match error {
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        ) => true,
        Error::DatabaseError(_, info) => {
            // Connection exceptions, shutdowns and resource exhaustion (SQLSTATE classes 08,
            // 57P, 53) arrive as "unknown" kinds; recognise them by their message.
            let message = info.message().to_ascii_lowercase();
            [
                "terminating connection",
                "connection",
                "shutting down",
                "too many clients",
                "out of memory",
            ]
            .iter()
            .any(|m| message.contains(m))
        }
        Error::BrokenTransactionManager => true,
        _ => false,
    }
}

impl From<deadpool::PoolError> for DbError {
    fn from(e: deadpool::PoolError) -> Self {
        DbError::Pool(e.to_string())
    }
}

pub type Result<T, E = DbError> = std::result::Result<T, E>;

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

/// Creates the service's schema if it does not exist and returns a pool bound to it.
pub async fn connect(config: &DatabaseConfig) -> Result<Pool> {
    ensure_schema(&config.url, &config.schema).await?;
    let url = url_with_schema(&config.url, &config.schema)?;
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new(url);
    deadpool::Pool::builder(manager)
        .max_size(config.pool_size)
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

/// Runs the pending `migrations` into `schema`. Replicas starting together take turns.
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
        let applied = harness
            .run_pending_migrations(StaticMigrations(migrations))
            .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
            .map_err(|e| DbError::Migration(e.to_string()));
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
    fn advisory_keys_are_stable_and_distinct() {
        assert_eq!(advisory_key("mapping"), advisory_key("mapping"));
        assert_ne!(advisory_key("mapping"), advisory_key("ingest"));
    }
}
