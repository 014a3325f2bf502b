//! The import schedule (#61): the incumbent's 24-hour schedule, per workspace.
//!
//! A workspace whose settings import anything ([`crate::modules::sources`] not empty) has one
//! row in `import_schedules`; a workspace importing nothing (or deleted) has none. Each
//! scheduler round ([`serve`], every `schedule.scan`):
//! 1. **keeps the rows true to the settings**: reads the projection page by page, creates the
//!    missing rows with their first run due now (the incumbent sets `next_run = now` on every
//!    save) and deletes those no longer wanted ([`wanted`], pure);
//! 2. **claims the due rows** by moving `next_run_at` one interval on — so each due round is
//!    taken by exactly one replica — in the transaction that writes step 3's requests, so a
//!    failure loses no claimed round;
//! 3. **requests every imported field** of each claimed workspace, in chain order (#63), with
//!    reason `schedule`: incremental runs that keep the 30-minute rule (#35), served by the
//!    runner task like any other request (coalesced with pending ones, retried on failure).
//!
//! Settings changes do not wait for the schedule: mapping's `ImportRequested` commands run the
//! changed fields at once. Departure: a settings change does not move an existing schedule's
//! next round to now (the incumbent's `update_or_create` does, re-running every field); only
//! the changed fields run at once. The reconcile walks the whole projection every `scan` —
//! fine for thousands of workspaces; at far more it should follow the settings topic instead.
//!
//! Failure policy: a round that fails (database down) is logged and the next round retries; a
//! workspace whose snapshot does not decode imports nothing and so has no schedule.

use std::time::Duration;

use attrsync_db::{DbError, Pool};
use attrsync_kafka::workspaces::{self, ProjectedWorkspace};
use chrono::{DateTime, Utc};
use diesel::{
    OptionalExtension as _, QueryableByName,
    pg::data_types::PgInterval,
    sql_types::{Array, BigInt, Interval, Nullable, Timestamptz},
};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use tokio_util::sync::CancellationToken;

use crate::{
    consumers::REASON_SCHEDULE,
    modules::{self, SourceField},
    settings, store,
};

/// The fields a workspace's schedule requests, in chain order; empty: no schedule.
pub fn wanted(workspace: &ProjectedWorkspace) -> Vec<SourceField> {
    if workspace.deleted {
        return Vec::new();
    }
    modules::sources(&settings::plan(workspace))
}

/// A workspace's schedule as stored.
#[derive(Debug, Clone, QueryableByName)]
pub struct ScheduleRow {
    #[diesel(sql_type = BigInt)]
    pub workspace_id: i64,
    #[diesel(sql_type = Timestamptz)]
    pub next_run_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub last_run_at: Option<DateTime<Utc>>,
}

fn interval(d: Duration) -> PgInterval {
    PgInterval::from_microseconds(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The stored schedule of `workspace_id`, if any.
pub async fn load(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
) -> diesel::QueryResult<Option<ScheduleRow>> {
    diesel::sql_query(
        "SELECT workspace_id, next_run_at, last_run_at FROM import_schedules \
         WHERE workspace_id = $1",
    )
    .bind::<BigInt, _>(workspace_id)
    .get_result(conn)
    .await
    .optional()
}

/// Step 1: schedules for the workspaces that import, none for the others.
async fn reconcile(pool: &Pool) -> Result<(), DbError> {
    let mut conn = pool.get().await?;
    let mut after_id = 0;
    loop {
        let page = workspaces::page(&mut conn, after_id, 500).await?;
        let Some(last) = page.last() else {
            break;
        };
        after_id = last.workspace_id;
        let (keep, drop): (Vec<&ProjectedWorkspace>, Vec<&ProjectedWorkspace>) =
            page.iter().partition(|w| !wanted(w).is_empty());
        let keep: Vec<i64> = keep.iter().map(|w| w.workspace_id).collect();
        let drop: Vec<i64> = drop.iter().map(|w| w.workspace_id).collect();
        diesel::sql_query(
            "INSERT INTO import_schedules (workspace_id) SELECT unnest($1::bigint[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind::<Array<BigInt>, _>(&keep)
        .execute(&mut conn)
        .await?;
        diesel::sql_query("DELETE FROM import_schedules WHERE workspace_id = ANY($1)")
            .bind::<Array<BigInt>, _>(&drop)
            .execute(&mut conn)
            .await?;
    }
    // Workspaces gone from the projection altogether.
    diesel::sql_query(
        "DELETE FROM import_schedules s WHERE NOT EXISTS \
         (SELECT 1 FROM workspace_projection p WHERE p.workspace_id = s.workspace_id \
            AND NOT p.deleted)",
    )
    .execute(&mut conn)
    .await?;
    Ok(())
}

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = BigInt)]
    workspace_id: i64,
}

/// Steps 2 and 3: claims the due schedules and requests their fields, in one transaction — a
/// failure part-way loses no claimed round (the claim rolls back with the requests).
async fn run_due(pool: &Pool, every: Duration) -> Result<usize, DbError> {
    let mut conn = pool.get().await?;
    conn.transaction::<usize, DbError, _>(async |conn| {
        let claimed: Vec<Claimed> = diesel::sql_query(
            "UPDATE import_schedules s SET next_run_at = now() + $1, last_run_at = now() \
             FROM (SELECT workspace_id FROM import_schedules WHERE next_run_at <= now() \
                   ORDER BY next_run_at LIMIT 100 FOR UPDATE SKIP LOCKED) due \
             WHERE s.workspace_id = due.workspace_id RETURNING s.workspace_id",
        )
        .bind::<Interval, _>(interval(every))
        .load(conn)
        .await?;
        for c in &claimed {
            let Some(workspace) = workspaces::find(conn, c.workspace_id).await? else {
                continue;
            };
            for field in wanted(&workspace) {
                store::request(
                    conn,
                    c.workspace_id,
                    &field,
                    store::Ask {
                        full: false,
                        force: false,
                        reason: REASON_SCHEDULE,
                        settings_version: 0,
                    },
                )
                .await?;
            }
        }
        Ok(claimed.len())
    })
    .await
}

/// Runs scheduler rounds every `scan` until `shutdown`.
pub async fn serve(pool: Pool, every: Duration, scan: Duration, shutdown: CancellationToken) {
    loop {
        if let Err(e) = reconcile(&pool).await {
            tracing::warn!(error = %e, "import schedules not reconciled; next round");
        }
        match run_due(&pool, every).await {
            Ok(0) => {}
            Ok(n) => {
                metrics::counter!("import_to_fyle_scheduled_rounds_total").increment(n as u64);
                tracing::info!(workspaces = n, "scheduled imports requested");
            }
            Err(e) => tracing::warn!(error = %e, "due import schedules not served; next round"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(scan) => {}
        }
    }
}
