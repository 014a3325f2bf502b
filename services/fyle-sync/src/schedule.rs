//! Scheduled rounds: the safety net under webhooks, and webhook health.
//!
//! A task of the service (`Declaration::task`) wakes every `reconcile.tick` and:
//! 1. retries `PENDING` webhook subscriptions that are due ([`crate::subscription`]) — also
//!    with `reconcile.enabled = false`, which turns off only the rest;
//! 2. runs a **round** for every `CONNECTED` workspace that is due: an interval after its last
//!    round (or after it connected) — `reconcile.interval` while its webhook health is HEALTHY,
//!    the shorter `reconcile.degraded_interval` while DEGRADED, when polling takes over;
//! 3. sets the `fyle_sync_webhook_health_workspaces{state}` gauge.
//!
//! **A round**, under the lease `fyle-round:<workspace>` (one replica per workspace; the due
//! time is read again once it is held, so a round another replica just finished is not
//! repeated), takes each pulled resource by what [`work_for`] says:
//! - **webhook mode** (mapping's Fyle webhook flag for the resource's type, else the global flag;
//!   the same flag ingest applies): a cheap incremental **reconcile** judged against the round's
//!   start less `reconcile.grace`; once `pulls.min_interval` has passed since the last full pass,
//!   a judged full pass instead, which also finds deletions whose `DELETED` webhook was lost. A
//!   resource never pulled gets an unjudged baseline full pass.
//! - **polling mode**: the incumbent's 24-hour rule — a full pass once `pulls.min_interval` has
//!   passed, nothing otherwise.
//!
//! Each pass takes the resource's own pull lease too (so a round and a `SyncDimensions` never
//! pull the same workspace × resource at once; one held elsewhere is skipped this round).
//! Every change a judged pass had to apply is a **missed webhook** (see [`crate::pull`]); the
//! round's judged passes together are one **window** of [`attrsync_core::webhook_health`]: its
//! missed total steps the workspace's state, recorded by the shared
//! [`attrsync_kafka::webhook_health::HealthRecorder`] (the `webhook_health` table; a change of
//! state is written with a `WebhookHealthChanged` event on `sync.webhook-health.v1`, source
//! `fyle`, through the outbox in the same transaction, fenced by the round's lease, and counted
//! in `fyle_sync_webhook_health_changes_total{state}`). The schedule (interval by health, next
//! round due) is [`attrsync_core::webhook_health::next_round_at`]; qbo-sync's scheduler
//! (`qbo_sync::reconcile`) runs on the same pieces.
//!
//! Failure policy: a round whose judged passes did not all complete (Fyle or the database
//! failing, a pass held elsewhere) steps no health — an incomplete window proves nothing — but
//! still records its time, so a failing workspace is retried at its interval, not every tick.
//! A broken connection is not scheduled (see [`crate::connection`]). Rounds run one after the
//! other; the task checks for shutdown between rounds and never abandons a pass half-way.

use std::time::Duration;

use attrsync_core::webhook::FyleResource;
use attrsync_db::{
    DbError, Pool,
    lease::{self, Lease},
};
use attrsync_kafka::{
    relay::RelayHandle,
    webhook_health::{self as health, HealthRecorder, Window},
    workspaces::{Lookup, ProjectedWorkspace, WorkspaceDirectory},
};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use tokio_util::sync::CancellationToken;

use crate::{
    config::ReconcileConfig,
    connection::CONNECTED,
    pull::{self, PULLED, PassPlan, Puller, RunKind},
    schema::fyle_connections as fc,
    subscription::Subscriptions,
};

/// Who records fyle-sync's health: metric names, envelope producer, event source.
pub(crate) const SOURCE: health::Source = health::Source {
    metric_prefix: "fyle_sync",
    producer: "fyle-sync",
    webhooks: "fyle",
};

/// What a round does with one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Webhook mode, never pulled: a full pass that judges nothing.
    Baseline,
    /// Webhook mode: an incremental pass, judged.
    Reconcile,
    /// Webhook mode, full pass due: a full pass, judged (finds lost deletions).
    ReconcileFull,
    /// Polling mode, full pass due (the 24-hour rule).
    Full,
    /// Polling mode, pulled recently.
    Nothing,
}

/// What a round does with a resource (pure; see the module doc).
pub fn work_for(
    webhook_mode: bool,
    watermark: Option<DateTime<Utc>>,
    last_full: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    min_interval: Duration,
) -> Work {
    let full_due = !pull::pulled_recently(last_full, now, min_interval, false);
    match (webhook_mode, full_due) {
        (true, _) if watermark.is_none() && last_full.is_none() => Work::Baseline,
        (true, true) => Work::ReconcileFull,
        (true, false) if watermark.is_none() => Work::ReconcileFull,
        (true, false) => Work::Reconcile,
        (false, true) => Work::Full,
        (false, false) => Work::Nothing,
    }
}

/// The mapping flag that governs a pulled resource's webhooks: its fixed attribute type
/// (`CATEGORY`, …), or for expense fields the resource name (else the global flag).
pub fn webhook_mode(workspace: &ProjectedWorkspace, resource: &FyleResource) -> bool {
    let key = resource
        .fixed_attribute_type()
        .map_or_else(|| resource.as_str().to_owned(), |t| t.as_str().to_owned());
    workspace.fyle_webhooks_enabled_for(&key)
}

/// The scheduler task. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Scheduler {
    pub(crate) pool: Pool,
    pub(crate) puller: Puller,
    pub(crate) subscriptions: Subscriptions,
    pub(crate) directory: WorkspaceDirectory,
    pub(crate) config: ReconcileConfig,
    pub(crate) min_interval: Duration,
    pub(crate) lease_ttl: Duration,
    pub(crate) recorder: HealthRecorder,
    pub(crate) relay: RelayHandle,
    pub(crate) holder: String,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// Runs until `shutdown`. With `reconcile.enabled = false` no round is scheduled, but
    /// pending subscriptions are still retried.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        if !self.config.enabled {
            tracing::info!("scheduled rounds are off (reconcile.enabled = false)");
        }
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.config.tick) => self.tick(&shutdown).await,
            }
        }
    }

    async fn tick(&self, shutdown: &CancellationToken) {
        if let Err(e) = self.subscriptions.retry_due().await {
            tracing::warn!(error = %e, "retrying pending Fyle subscriptions failed");
        }
        if !self.config.enabled {
            return;
        }
        let due = match self.due_workspaces().await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "could not read which workspaces are due; next tick");
                return;
            }
        };
        for workspace_id in due {
            if shutdown.is_cancelled() {
                return;
            }
            self.round(workspace_id).await;
        }
        if let Err(e) = self.set_gauges().await {
            tracing::warn!(error = %e, "could not count workspaces by webhook health");
        }
    }

    /// Connected workspaces whose next round is due.
    async fn due_workspaces(&self) -> Result<Vec<i64>, DbError> {
        let mut conn = self.pool.get().await?;
        let connected: Vec<(i64, DateTime<Utc>)> = fc::table
            .filter(fc::status.eq(CONNECTED))
            .select((fc::workspace_id, fc::connected_at))
            .order(fc::workspace_id)
            .load(&mut conn)
            .await?;
        let ids: Vec<i64> = connected.iter().map(|(id, _)| *id).collect();
        let rows = health::load_many(&mut conn, &ids).await?;
        let now = Utc::now();
        Ok(connected
            .into_iter()
            .filter(|(id, connected_at)| {
                health::due(rows.get(id), *connected_at, now, self.recorder.schedule())
            })
            .map(|(id, _)| id)
            .collect())
    }

    async fn set_gauges(&self) -> Result<(), DbError> {
        let mut conn = self.pool.get().await?;
        let ids: Vec<i64> = fc::table
            .filter(fc::status.eq(CONNECTED))
            .select(fc::workspace_id)
            .load(&mut conn)
            .await?;
        let rows = health::load_many(&mut conn, &ids).await?;
        self.recorder.set_gauges(ids.iter().map(|id| {
            rows.get(id)
                .map(health::HealthRow::health)
                .unwrap_or_default()
        }));
        Ok(())
    }

    /// One round of one workspace, under its lease (see the module doc).
    async fn round(&self, workspace_id: i64) {
        let name = format!("fyle-round:{workspace_id}");
        let held = match lease::acquire(&self.pool, &name, &self.holder, self.lease_ttl).await {
            Ok(Some(held)) => held,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(workspace_id, error = %e, "could not take a round lease");
                return;
            }
        };
        let renewer = self.puller.renew_while_running(held.clone());
        let result = self.round_held(workspace_id, &held).await;
        renewer.abort();
        if let Err(e) = lease::release(&self.pool, &held).await {
            tracing::warn!(error = %e, lease = %held.name, "could not release a round lease; it expires");
        }
        self.relay.wake();
        if let Err(e) = result {
            tracing::warn!(workspace_id, error = %e, "round failed");
        }
    }

    async fn round_held(&self, workspace_id: i64, held: &Lease) -> Result<(), String> {
        let started = Utc::now();
        // Due still? Another replica may have finished this round while we waited.
        {
            let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
            let connection: Option<(String, DateTime<Utc>)> = fc::table
                .find(workspace_id)
                .select((fc::status, fc::connected_at))
                .first(&mut conn)
                .await
                .optional()
                .map_err(|e| e.to_string())?;
            let Some((status, connected_at)) = connection else {
                return Ok(());
            };
            let row = health::load(&mut conn, workspace_id)
                .await
                .map_err(|e| e.to_string())?;
            if status != CONNECTED
                || !health::due(
                    row.as_ref(),
                    connected_at,
                    started,
                    self.recorder.schedule(),
                )
            {
                return Ok(());
            }
        }
        let window = self.passes(workspace_id, started).await;
        let window = match window {
            Ok(w) => w,
            Err(e) => {
                // Still a round: the next one is an interval away, not a tick.
                self.record(workspace_id, held, started, &Window::failed())
                    .await?;
                return Err(e);
            }
        };
        self.record(workspace_id, held, started, &window).await
    }

    /// The round's passes; `Err` when none could run (workspace unknown, no client).
    async fn passes(&self, workspace_id: i64, started: DateTime<Utc>) -> Result<Window, String> {
        let workspace = match self.directory.lookup(workspace_id).await {
            Lookup::Found(w) if !w.deleted => w,
            Lookup::Found(_) | Lookup::Unknown => {
                return Err("the workspace is deleted or unknown".into());
            }
            Lookup::Unavailable(e) => return Err(e),
        };
        let last = self
            .puller
            .last_syncs(workspace_id)
            .await
            .map_err(|e| e.to_string())?;
        let client = self
            .puller
            .fyle
            .client(workspace_id)
            .await
            .map_err(|e| e.to_string())?;
        let grace = chrono::Duration::from_std(self.config.grace).unwrap_or_default();
        let judge_before = started - grace;
        let mut window = Window::default();
        for resource in PULLED {
            let (last_full, watermark) = last
                .iter()
                .find(|(t, ..)| t == resource.as_str())
                .map_or((None, None), |(_, l, w)| (*l, *w));
            let work = work_for(
                webhook_mode(&workspace, &resource),
                watermark,
                last_full,
                started,
                self.min_interval,
            );
            let plan = match work {
                Work::Nothing => continue,
                Work::Baseline => PassPlan {
                    kind: RunKind::ReconcileFull,
                    since: None,
                    judge_before: None,
                },
                Work::Full => PassPlan {
                    kind: RunKind::Full,
                    since: None,
                    judge_before: None,
                },
                Work::ReconcileFull => PassPlan {
                    kind: RunKind::ReconcileFull,
                    since: None,
                    judge_before: Some(judge_before),
                },
                Work::Reconcile => PassPlan {
                    kind: RunKind::Reconcile,
                    since: watermark,
                    judge_before: Some(judge_before),
                },
            };
            let judged = plan.judge_before.is_some();
            let outcome = match self
                .puller
                .pull_resource(&client, workspace_id, &resource, plan)
                .await
            {
                Ok(pulled) if pulled.outcome == "HELD_ELSEWHERE" => None,
                Ok(pulled) => Some(u64::from(pulled.missed_webhooks)),
                Err(e @ crate::connection::FyleError::Broken(..)) => {
                    return Err(e.to_string());
                }
                Err(e) => {
                    tracing::warn!(workspace_id, resource = %resource, error = %e, "a scheduled pass failed; the window is incomplete");
                    None
                }
            };
            window.add(judged, resource.as_str(), outcome);
        }
        Ok(window)
    }

    /// Records the round and, for a complete window, steps the workspace's health (the shared
    /// [`HealthRecorder`]: a change of state goes out as an event in the same transaction).
    async fn record(
        &self,
        workspace_id: i64,
        held: &Lease,
        started: DateTime<Utc>,
        window: &Window,
    ) -> Result<(), String> {
        self.recorder
            .record(&self.pool, workspace_id, held, started, window)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 2, h, m, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn webhook_mode_reconciles_and_polling_mode_keeps_the_24_hour_rule() {
        let day = Duration::from_secs(24 * 3600);
        let now = at(12, 0);
        let recent = Some(at(11, 0));
        let old = Some(now - chrono::Duration::hours(25));
        assert_eq!(work_for(true, None, None, now, day), Work::Baseline);
        assert_eq!(work_for(true, recent, recent, now, day), Work::Reconcile);
        assert_eq!(work_for(true, recent, old, now, day), Work::ReconcileFull);
        // Pulled, but the collection was empty: a (cheap) judged full pass.
        assert_eq!(work_for(true, None, recent, now, day), Work::ReconcileFull);
        assert_eq!(work_for(false, None, None, now, day), Work::Full);
        assert_eq!(work_for(false, recent, old, now, day), Work::Full);
        assert_eq!(work_for(false, recent, recent, now, day), Work::Nothing);
    }
}
