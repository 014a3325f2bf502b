//! The runner task: serves `import_requests` — what the consumers and `TriggerImport` recorded
//! — outside any consumer transaction.
//!
//! Every `runs.coalesce_window` it takes the requests whose newest arrival has waited a full
//! window (so a burst of QBO changes becomes **one run** per workspace × source field) and
//! that are due (`not_before`), oldest first, and runs each ([`crate::run`]). A request is
//! deleted after its run only if no new request came meanwhile (`seq` unchanged); otherwise it
//! stays and the next round runs again, incrementally, for what arrived during the run.
//!
//! Failure policy: nothing is lost. A run that failed for a passing reason (Fyle or fyle-sync
//! unreachable, throttled through every retry, the database) keeps its request with
//! `attempts + 1` and `not_before` pushed back exponentially (`runs.retry_initial` …
//! `runs.retry_max`); a run Fyle rejected (FAILED with its validation message) or FATAL drops
//! the request — repeating it would fail the same way; the next change, command or schedule
//! runs again. A request held by another replica's run (lease busy) waits for the next round.

use std::time::Duration;

use attrsync_db::DbError;
use diesel::{
    QueryableByName,
    pg::data_types::PgInterval,
    sql_types::{BigInt, Bool, Integer, Interval, Text},
};
use diesel_async::RunQueryDsl;
use tokio_util::sync::CancellationToken;

use crate::{
    modules::SourceField,
    run::{Outcome, RunRequest, Runner},
};

#[derive(QueryableByName, Debug)]
struct Due {
    #[diesel(sql_type = BigInt)]
    workspace_id: i64,
    #[diesel(sql_type = Text)]
    source_field: String,
    #[diesel(sql_type = Bool)]
    full_import: bool,
    #[diesel(sql_type = Bool)]
    force: bool,
    #[diesel(sql_type = Text)]
    reason: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = BigInt)]
    settings_version: i64,
}

fn interval(d: Duration) -> PgInterval {
    PgInterval::from_microseconds(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The wait before retry `attempts + 1` (pure): `initial × 2^attempts`, at most `max`.
pub fn retry_delay(attempts: i32, initial: Duration, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(u32::try_from(attempts.clamp(0, 31)).unwrap_or(31));
    initial.saturating_mul(factor).min(max)
}

/// The task: a round every coalescing window until shutdown.
pub async fn serve(runner: Runner, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(runner.config().coalesce_window) => {}
        }
        match due(&runner).await {
            Ok(rows) => {
                for row in rows {
                    if shutdown.is_cancelled() {
                        return;
                    }
                    serve_one(&runner, row).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "import requests not read; next round"),
        }
    }
}

async fn due(runner: &Runner) -> Result<Vec<Due>, DbError> {
    let mut conn = runner.pool().get().await?;
    Ok(diesel::sql_query(
        "SELECT workspace_id, source_field, full_import, force, reason, attempts, seq, \
                settings_version \
         FROM import_requests WHERE not_before <= now() AND requested_at <= now() - $1 \
         ORDER BY requested_at LIMIT 100",
    )
    .bind::<Interval, _>(interval(runner.config().coalesce_window))
    .load(&mut conn)
    .await?)
}

async fn serve_one(runner: &Runner, row: Due) {
    let Some(field) = SourceField::parse(&row.source_field) else {
        let _ = settle(runner, &row, None).await;
        return;
    };
    let request = RunRequest {
        workspace_id: row.workspace_id,
        field,
        full: row.full_import,
        force: row.force,
        reason: row.reason.clone(),
        settings_version: row.settings_version,
        custom_field: None,
    };
    let retry = match runner.run(&request).await {
        Ok(Outcome::Busy) => return,
        Ok(Outcome::Ran {
            transient: true, ..
        }) => true,
        Ok(Outcome::Ran { .. } | Outcome::Skipped { .. }) => false,
        Err(crate::run::RunError::UnknownWorkspace(_)) => false,
        Err(e) => {
            tracing::warn!(workspace_id = row.workspace_id, field = %row.source_field,
                error = %e, "import run not completed; retried");
            true
        }
    };
    let delay = retry.then(|| {
        retry_delay(
            row.attempts,
            runner.config().retry_initial,
            runner.config().retry_max,
        )
    });
    if let Err(e) = settle(runner, &row, delay).await {
        tracing::warn!(error = %e, "import request not settled; served again");
    }
}

/// Deletes the served request (`None`) or defers it, unless a newer request arrived.
async fn settle(runner: &Runner, row: &Due, retry_in: Option<Duration>) -> Result<(), DbError> {
    let mut conn = runner.pool().get().await?;
    match retry_in {
        None => {
            diesel::sql_query(
                "DELETE FROM import_requests WHERE workspace_id = $1 AND source_field = $2 \
                 AND seq = $3",
            )
            .bind::<BigInt, _>(row.workspace_id)
            .bind::<Text, _>(&row.source_field)
            .bind::<BigInt, _>(row.seq)
            .execute(&mut conn)
            .await?;
        }
        Some(delay) => {
            diesel::sql_query(
                "UPDATE import_requests SET attempts = attempts + 1, not_before = now() + $4 \
                 WHERE workspace_id = $1 AND source_field = $2 AND seq = $3",
            )
            .bind::<BigInt, _>(row.workspace_id)
            .bind::<Text, _>(&row.source_field)
            .bind::<BigInt, _>(row.seq)
            .bind::<Interval, _>(interval(delay))
            .execute(&mut conn)
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap() {
        let s = Duration::from_secs;
        assert_eq!(retry_delay(0, s(1), s(300)), s(1));
        assert_eq!(retry_delay(4, s(1), s(300)), s(16));
        assert_eq!(retry_delay(40, s(1), s(300)), s(300));
    }
}
