//! First statistics: tables of the service's schema that hold rows but have no statistics are
//! analysed at once, not a minute later.
//!
//! PostgreSQL plans a table that has never been vacuumed or analysed (`pg_class.reltuples < 0`,
//! also after a `TRUNCATE` or a restore) with default selectivities, so every index led by the
//! same columns costs the same to it. A lookup by key then may walk an index that shares only
//! the key's first columns and read every row they match, per key: `EXPLAIN ANALYZE` on
//! never-analysed tables of 100,000 rows measured 3.8 ms per key in fyle-sync's attributes and
//! 8.6 ms per key in mapping's projections, against about 0.005 ms through the key
//! (docs/benchmarks.md, fyle-sync, "A trap fixed"). Autovacuum analyses a new table within
//! about a minute of its first rows, and a new deployment's first pulls and projections land in
//! that minute. So every `database.first_statistics_interval` (2 s; `0s` turns it off) [`run`]
//! analyses each table of the schema that it may analyse, that has pages, and that either has
//! no statistics or has statistics counting no rows while rows have been committed since (an
//! `ANALYZE` that ran while the first rows were still uncommitted counts none) — the latter at
//! most [`MAX_REPEATS`] times per table and process, and never once autovacuum has analysed it.
//! From then on autovacuum keeps the statistics.
//!
//! Each `ANALYZE` runs in a transaction of its own with `SKIP_LOCKED` (a table locked by a
//! migration, a `VACUUM` or another replica's `ANALYZE` is left to the next pass, so nothing
//! queues behind it) and a statement timeout of [`ANALYZE_TIMEOUT`]. Failure policy: a table
//! that fails is logged and tried at the next pass, the other tables still are; a pass that
//! cannot reach the database is logged and tried again at the next interval. A pass under way
//! is abandoned at shutdown.

use std::{collections::HashMap, time::Duration};

use attrsync_db::Pool;
use diesel::sql_types::{Bool, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio_util::sync::CancellationToken;

/// How many times one process analyses a table whose statistics still count no rows.
pub const MAX_REPEATS: u32 = 5;
/// The statement timeout of one `ANALYZE` (it reads a sample of at most 30,000 rows).
pub const ANALYZE_TIMEOUT: Duration = Duration::from_secs(60);

/// A table to analyse: its name, the statement (identifiers quoted by the server), and whether
/// it was analysed before (its statistics count no rows).
#[derive(diesel::QueryableByName)]
struct Unanalysed {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    analyse: String,
    #[diesel(sql_type = Bool)]
    repeat: bool,
}

/// What one pass did: the tables analysed, and those that failed with their error.
#[derive(Debug, Default)]
pub struct Pass {
    pub analysed: Vec<String>,
    pub failed: Vec<(String, String)>,
}

/// Analyses the tables of the connection's schema that need first statistics (module doc).
/// `repeats` counts, per table, the analyses of statistics that still counted no rows.
pub async fn analyse_new_tables(
    conn: &mut AsyncPgConnection,
    repeats: &mut HashMap<String, u32>,
) -> Result<Pass, diesel::result::Error> {
    let tables: Vec<Unanalysed> = diesel::sql_query(
        "SELECT c.relname::text AS name, \
                format('ANALYZE (SKIP_LOCKED) %I.%I', n.nspname, c.relname) AS analyse, \
                c.reltuples >= 0 AS repeat \
         FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid \
         WHERE n.nspname = current_schema() AND c.relkind = 'r' \
           AND pg_has_role(c.relowner, 'USAGE') AND pg_relation_size(c.oid) > 0 \
           AND (c.reltuples < 0 \
                OR (c.reltuples = 0 AND s.n_live_tup > 0 AND s.last_autoanalyze IS NULL))",
    )
    .load(conn)
    .await?;
    let timeout = format!(
        "SET LOCAL statement_timeout = {}",
        ANALYZE_TIMEOUT.as_millis()
    );
    let mut pass = Pass::default();
    for table in tables {
        if table.repeat {
            let done = repeats.entry(table.name.clone()).or_default();
            if *done >= MAX_REPEATS {
                continue;
            }
            *done += 1;
        }
        let analysed = conn
            .transaction::<_, diesel::result::Error, _>(async |conn| {
                diesel::sql_query(&timeout).execute(conn).await?;
                diesel::sql_query(&table.analyse).execute(conn).await
            })
            .await;
        match analysed {
            Ok(_) => pass.analysed.push(table.name),
            Err(e) => pass.failed.push((table.name, e.to_string())),
        }
    }
    Ok(pass)
}

/// Runs [`analyse_new_tables`] every `every` until `shutdown`; never, when `every` is zero.
pub(crate) async fn run(pool: Pool, every: Duration, shutdown: CancellationToken) {
    if every.is_zero() {
        return shutdown.cancelled().await;
    }
    let mut repeats = HashMap::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let pass = async {
            let mut conn = pool.get().await.map_err(|e| e.to_string())?;
            analyse_new_tables(&mut conn, &mut repeats)
                .await
                .map_err(|e| e.to_string())
        };
        let pass = tokio::select! {
            () = shutdown.cancelled() => return,
            pass = pass => pass,
        };
        match pass {
            Ok(pass) => {
                if !pass.analysed.is_empty() {
                    tracing::info!(tables = ?pass.analysed, "first statistics: analysed");
                }
                for (table, error) in pass.failed {
                    tracing::warn!(table, %error, "first statistics: analysing failed; tried again at the next pass");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "first statistics failed; tried again at the next interval");
            }
        }
    }
}
