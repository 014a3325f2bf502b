//! The count of a workspace's active corporate cards without a mapping, reported to Fyle's
//! integration-settings service whenever it changes (incumbent #23: Fyle's app shows it as a
//! banner so an admin maps the cards before card expenses fail to export).
//!
//! **What is counted**: the active `CORPORATE_CARD` values of the workspace's projection with
//! no `CORPORATE_CARD` mapping, when the card export object needs a card account per card
//! ([`CARD_OBJECTS_NEEDING_MAPPINGS`]: `CREDIT CARD PURCHASE`, `DEBIT CARD EXPENSE`); otherwise
//! 0, so the banner never shows a count that no longer matters (the incumbent left the last
//! count there).
//!
//! **Noticing a change**: database triggers (migration `2026-12-11-000001_unmapped_cards`) queue
//! a recount in `unmapped_card_recounts` whenever a card is stored, (de)activated or removed, a
//! card mapping is made or deleted, or the card export object changes — in the transaction that
//! does it, whichever code path that is (consumers, operators, settings, auto-mapping), so no
//! path can forget. The queue has no unique key: concurrent writers never wait on each other.
//!
//! **Recounting** ([`Reporter::recount`]): one replica at a time (a transaction-level advisory
//! lock, so a later recount always reads a later snapshot and an older count never overwrites a
//! newer one) drains up to [`RECOUNT_BATCH`] queued rows and upserts each workspace's count into
//! `unmapped_card_reports.wanted` in the same statement: a queued mark and its recount commit
//! together or not at all.
//!
//! **Reporting** ([`Reporter::report`]): one row at a time, a row whose `wanted` differs from
//! `reported`, that is due (`not_before`) and not claimed is claimed (`FOR UPDATE SKIP LOCKED`;
//! a fresh `claim_token`, `claimed_until` a lease ahead, the attempt counted — committed before
//! any call), so replicas never send the same row at once and no transaction is open during a
//! call. The claim is apart from the backoff: a recount that changes `wanted` makes the row due
//! again but cannot release a claim, and only the claim's holder records the outcome (`WHERE
//! claim_token = …`), so an older count sent late can never be recorded over a newer one. Then:
//! an access token from fyle-sync (`GetAccessToken`), and `PATCH
//! {unmapped_cards.url}/integrations/` with `{tpa_name, unmapped_card_count}`. A 2xx answer
//! records the count sent as `reported` (a count that changed meanwhile is sent next); an
//! answer saying the integration is not installed is a 2xx too, and recorded the same way.
//!
//! Failure policy: a report never undoes anything — mappings and cards are already committed.
//! fyle-sync or Fyle down, a broken Fyle connection, a refused PATCH: the row keeps its
//! `wanted`, records the reason (`last_error`: the HTTP status or gRPC code, never a body or a
//! token) and is retried after `retry_initial × 2^(attempts−1)`, at most `retry_max`
//! (`mapping_unmapped_card_reports_total{outcome}` counts both). A crash between claim and
//! record leaves the row due again when its lease ends. With the database down the task logs
//! and tries again at its next tick.

use std::time::Duration;

use attrsync_db::{DbError, Pool};
use attrsync_proto::v1::{GetAccessTokenRequest, fyle_sync_service_client::FyleSyncServiceClient};
use diesel::{
    QueryableByName,
    sql_types::{Array, BigInt, Double, Integer, Nullable, Text},
};
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::config::UnmappedCardsConfig;

/// Card export objects that need a card account per card, so an unmapped card blocks exports.
pub const CARD_OBJECTS_NEEDING_MAPPINGS: [&str; 2] = ["CREDIT CARD PURCHASE", "DEBIT CARD EXPENSE"];

/// Queued recounts drained per statement.
pub const RECOUNT_BATCH: i64 = 1_000;

/// Reports sent per tick at most (one claimed at a time).
const REPORTS_PER_TICK: usize = 50;

/// How long a claimed report is someone's: longer than one token request and one PATCH (each
/// bounded to 30 s).
const CLAIM_LEASE: Duration = Duration::from_secs(120);

/// The advisory lock of the recount (one replica at a time).
const RECOUNT_LOCK: i64 = 7_418_827_011;

/// The wait before retrying a report that failed `attempts` times (pure): doubling from
/// `initial`, at most `max`.
pub fn retry_after(attempts: i32, initial: Duration, max: Duration) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(20);
    initial.saturating_mul(1 << doublings).min(max)
}

/// The recount: drains queued marks and stores each workspace's count, in one statement.
const RECOUNT_SQL: &str = "\
WITH drained AS (
    DELETE FROM unmapped_card_recounts
    WHERE id IN (SELECT id FROM unmapped_card_recounts ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)
    RETURNING workspace_id
), counted AS (
    SELECT s.workspace_id,
           CASE WHEN s.corporate_credit_card_expenses_object = ANY($1) THEN (
               SELECT count(*) FROM source_attributes a
               WHERE a.workspace_id = s.workspace_id
                 AND a.attribute_type = 'CORPORATE_CARD' AND a.active
                 AND NOT EXISTS (
                     SELECT 1 FROM mappings m
                     WHERE m.workspace_id = a.workspace_id
                       AND m.source_type = 'CORPORATE_CARD' AND m.source_id = a.source_id))
           ELSE 0 END AS wanted
    FROM workspace_settings s
    WHERE s.workspace_id IN (SELECT workspace_id FROM drained)
)
INSERT INTO unmapped_card_reports AS r (workspace_id, wanted)
SELECT workspace_id, wanted FROM counted
ON CONFLICT (workspace_id) DO UPDATE SET
    wanted = EXCLUDED.wanted,
    attempts = CASE WHEN r.wanted = EXCLUDED.wanted THEN r.attempts ELSE 0 END,
    not_before = CASE WHEN r.wanted = EXCLUDED.wanted THEN r.not_before ELSE now() END,
    updated_at = now()";

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    locked: bool,
}

#[derive(QueryableByName, Debug)]
struct Claimed {
    #[diesel(sql_type = BigInt)]
    workspace_id: i64,
    #[diesel(sql_type = BigInt)]
    wanted: i64,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Text)]
    claim_token: String,
}

/// Why a report failed: what `last_error` records (no body, no token).
#[derive(Debug, thiserror::Error)]
enum ReportError {
    #[error("fyle-sync GetAccessToken: {0:?}")]
    Token(tonic::Code),
    #[error("integration settings: transport failure")]
    Transport,
    #[error("integration settings: HTTP {0}")]
    Status(u16),
}

/// The reporter task. Cheap to clone.
#[derive(Clone)]
pub struct Reporter {
    pool: Pool,
    fyle_sync: FyleSyncServiceClient<Channel>,
    http: reqwest::Client,
    config: UnmappedCardsConfig,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Reporter {
    pub fn new(
        pool: Pool,
        fyle_sync: FyleSyncServiceClient<Channel>,
        config: UnmappedCardsConfig,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            pool,
            fyle_sync,
            http,
            config,
        })
    }

    /// Recounts and reports every `tick` until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.config.tick) => {}
            }
            if let Err(e) = self.recount().await {
                tracing::warn!(error = %e, "unmapped-card recount failed; retried next tick");
            }
            if let Err(e) = self.report().await {
                tracing::warn!(error = %e, "unmapped-card reports failed; retried next tick");
            }
        }
    }

    /// Drains queued recounts into `unmapped_card_reports`; returns how many workspaces were
    /// recounted (0 when another replica holds the recount).
    pub async fn recount(&self) -> Result<usize, DbError> {
        let mut conn = self.pool.get().await?;
        let objects: Vec<String> = CARD_OBJECTS_NEEDING_MAPPINGS
            .iter()
            .map(|o| (*o).to_owned())
            .collect();
        let counted = conn
            .transaction::<_, diesel::result::Error, _>(async |conn| {
                let lock: Locked =
                    diesel::sql_query("SELECT pg_try_advisory_xact_lock($1) AS locked")
                        .bind::<BigInt, _>(RECOUNT_LOCK)
                        .get_result(conn)
                        .await?;
                if !lock.locked {
                    return Ok(0);
                }
                diesel::sql_query(RECOUNT_SQL)
                    .bind::<Array<Text>, _>(&objects)
                    .bind::<BigInt, _>(RECOUNT_BATCH)
                    .execute(conn)
                    .await
            })
            .await?;
        Ok(counted)
    }

    /// Sends the due reports, one claimed at a time; returns how many Fyle accepted.
    pub async fn report(&self) -> Result<usize, DbError> {
        let mut accepted = 0;
        for _ in 0..REPORTS_PER_TICK {
            let Some(row) = self.claim().await? else {
                break;
            };
            let outcome = self.send(row.workspace_id, row.wanted).await;
            let mut conn = self.pool.get().await?;
            match outcome {
                Ok(()) => {
                    accepted += 1;
                    metrics::counter!("mapping_unmapped_card_reports_total", "outcome" => "patched")
                        .increment(1);
                    diesel::sql_query(
                        "UPDATE unmapped_card_reports SET reported = $3, attempts = 0, \
                         last_error = NULL, claim_token = NULL, claimed_until = NULL, \
                         updated_at = now() \
                         WHERE workspace_id = $1 AND claim_token = $2",
                    )
                    .bind::<BigInt, _>(row.workspace_id)
                    .bind::<Text, _>(&row.claim_token)
                    .bind::<Nullable<BigInt>, _>(Some(row.wanted))
                    .execute(&mut conn)
                    .await?;
                }
                Err(e) => {
                    metrics::counter!("mapping_unmapped_card_reports_total", "outcome" => "failed")
                        .increment(1);
                    let wait = retry_after(
                        row.attempts,
                        self.config.retry_initial,
                        self.config.retry_max,
                    );
                    tracing::warn!(
                        workspace_id = row.workspace_id,
                        attempts = row.attempts,
                        error = %e,
                        retry_in = ?wait,
                        "could not report the unmapped-card count to Fyle"
                    );
                    diesel::sql_query(
                        "UPDATE unmapped_card_reports SET last_error = $3, \
                         not_before = now() + make_interval(secs => $4), \
                         claim_token = NULL, claimed_until = NULL, updated_at = now() \
                         WHERE workspace_id = $1 AND claim_token = $2",
                    )
                    .bind::<BigInt, _>(row.workspace_id)
                    .bind::<Text, _>(&row.claim_token)
                    .bind::<Text, _>(e.to_string())
                    .bind::<Double, _>(wait.as_secs_f64())
                    .execute(&mut conn)
                    .await?;
                }
            }
        }
        Ok(accepted)
    }

    /// Claims the most overdue report that is due and unclaimed, committed before any call.
    async fn claim(&self) -> Result<Option<Claimed>, DbError> {
        let mut conn = self.pool.get().await?;
        let claimed: Vec<Claimed> = diesel::sql_query(
            "UPDATE unmapped_card_reports r \
             SET claim_token = gen_random_uuid()::text, \
                 claimed_until = now() + make_interval(secs => $1), \
                 attempts = r.attempts + 1 \
             FROM (SELECT workspace_id FROM unmapped_card_reports \
                   WHERE wanted IS DISTINCT FROM reported AND not_before <= now() \
                     AND (claimed_until IS NULL OR claimed_until <= now()) \
                   ORDER BY not_before LIMIT 1 FOR UPDATE SKIP LOCKED) due \
             WHERE r.workspace_id = due.workspace_id \
             RETURNING r.workspace_id, r.wanted, r.attempts, r.claim_token",
        )
        .bind::<Double, _>(CLAIM_LEASE.as_secs_f64())
        .load(&mut conn)
        .await?;
        Ok(claimed.into_iter().next())
    }

    /// One report: a token from fyle-sync, then the PATCH.
    async fn send(&self, workspace_id: i64, count: i64) -> Result<(), ReportError> {
        let grant = self
            .fyle_sync
            .clone()
            .get_access_token(GetAccessTokenRequest { workspace_id })
            .await
            .map_err(|s| ReportError::Token(s.code()))?
            .into_inner();
        let url = format!("{}/integrations/", self.config.url.trim_end_matches('/'));
        let answer = self
            .http
            .patch(url)
            .bearer_auth(&grant.access_token)
            .json(&json!({
                "tpa_name": self.config.tpa_name,
                "unmapped_card_count": count,
            }))
            .send()
            .await
            .map_err(|_| ReportError::Transport)?;
        if answer.status().is_success() {
            Ok(())
        } else {
            Err(ReportError::Status(answer.status().as_u16()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_report_waits_twice_as_long_each_time_up_to_the_cap() {
        let s = Duration::from_secs;
        assert_eq!(retry_after(1, s(5), s(600)), s(5));
        assert_eq!(retry_after(2, s(5), s(600)), s(10));
        assert_eq!(retry_after(4, s(5), s(600)), s(40));
        assert_eq!(retry_after(30, s(5), s(600)), s(600));
        assert_eq!(retry_after(0, s(5), s(600)), s(5));
    }
}
