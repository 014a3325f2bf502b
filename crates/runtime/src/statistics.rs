//! First statistics: tables of the service's schema that hold rows but were never analysed are
//! analysed at once, not a minute later.
//!
//! PostgreSQL plans a table that has never been vacuumed or analysed (`pg_class.reltuples < 0`)
//! with default selectivities, so every index led by the same columns costs the same to it. A
//! lookup by key then may walk an index that shares only the key's first columns and read
//! every row they match, per key: `EXPLAIN ANALYZE` on never-analysed tables of 100,000 rows
//! measured 3.8 ms per key in fyle-sync's attributes and 8.6 ms per key in mapping's
//! projections, against 0.003 ms through the key (docs/benchmarks.md, fyle-sync, "A trap
//! fixed"). Autovacuum analyses a new table within about a minute of its first rows, and a new
//! deployment's first pulls and projections land in that minute. So every
//! `database.first_statistics_interval` (2 s; `0s` turns it off) [`run`] analyses each table of
//! the schema that has pages and no statistics yet; from then on autovacuum keeps them.
//!
//! `ANALYZE` reads a sample, and its lock blocks neither reads nor writes; two replicas
//! analysing one table take turns. Failure policy: a failed pass (database down) is logged
//! and tried again at the next interval; nothing waits for it.

use std::time::Duration;

use attrsync_db::Pool;
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tokio_util::sync::CancellationToken;

/// A table to analyse: its name, and the statement (identifiers quoted by the server).
#[derive(diesel::QueryableByName)]
struct Unanalysed {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    analyse: String,
}

/// Analyses every table of the connection's schema that has pages but was never analysed or
/// vacuumed; returns their names.
pub async fn analyse_new_tables(
    conn: &mut AsyncPgConnection,
) -> Result<Vec<String>, diesel::result::Error> {
    let tables: Vec<Unanalysed> = diesel::sql_query(
        "SELECT c.relname::text AS name, format('ANALYZE %I.%I', n.nspname, c.relname) AS analyse \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.reltuples < 0 \
           AND pg_relation_size(c.oid) > 0",
    )
    .load(conn)
    .await?;
    for table in &tables {
        diesel::sql_query(&table.analyse).execute(conn).await?;
    }
    Ok(tables.into_iter().map(|t| t.name).collect())
}

/// Runs [`analyse_new_tables`] every `every` until `shutdown`; never, when `every` is zero.
pub(crate) async fn run(pool: Pool, every: Duration, shutdown: CancellationToken) {
    if every.is_zero() {
        return shutdown.cancelled().await;
    }
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let analysed = match pool.get().await {
            Ok(mut conn) => analyse_new_tables(&mut conn)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match analysed {
            Ok(tables) if tables.is_empty() => {}
            Ok(tables) => tracing::info!(?tables, "first statistics: analysed"),
            Err(error) => {
                tracing::warn!(%error, "first statistics failed; tried again at the next interval");
            }
        }
    }
}
