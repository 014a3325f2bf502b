//! Scheduled rounds: the safety net under QBO webhooks, and their health.
//!
//! A task of the service (`Declaration::task`) wakes every `reconcile.tick` and runs a
//! **round** for every workspace of a `CONNECTED` realm (`qbo_credentials`) that is due: an
//! interval after its last round (or after the realm connected) — `reconcile.interval` while
//! its webhook health is HEALTHY, the shorter `reconcile.degraded_interval` while DEGRADED,
//! when polling takes over ([`attrsync_core::webhook_health::next_round_at`]). It then sets
//! `qbo_sync_webhook_health_workspaces{state}`.
//!
//! **A round**, under the lease `qbo-round:<workspace>` (one replica per workspace; the due
//! time is read again once it is held, so a round another replica just finished is not
//! repeated), takes each entity by what [`work_for`] says:
//! - **webhook mode** (mapping's QBO webhook flag for the entity from the workspace
//!   projection — the flag ingest applies — and an entity QBO sends webhooks for): an
//!   incremental **reconcile** (CDC) judged against the round's start less `reconcile.grace`;
//!   once `pulls.min_interval` (24 h) has passed since the entity's last full pass, a judged
//!   **full** pass instead, which also finds deletions neither a webhook nor CDC brought (a
//!   deletion older than CDC's 30 days, a CDC answer that stopped at its cap) — as fyle-sync
//!   does; an entity never pulled gets an unjudged baseline full pass first.
//! - **tax codes** of a workspace on webhooks: QBO never sends webhooks for them, so they get
//!   an incremental pass (a `LastUpdatedTime` query) every round that is **never judged**, and
//!   an unjudged full pass once a day.
//! - **polling mode** (the flag off): the incumbent's 24-hour rule (#34) — a full pass once
//!   `pulls.min_interval` has passed since the entity's last full pass, nothing otherwise; it
//!   judges nothing, so a workspace not on webhooks never counts a missed webhook.
//!
//! Each pass also takes its realm × entity pull lease ([`crate::pull`]; one held elsewhere —
//! another workspace of the realm, a `SyncDimensions` — is skipped this round). Every change a
//! judged pass had to apply is a **missed webhook** (see [`crate::pull`]: objects stamped after
//! the cutoff are deferred to the next round, so a webhook in flight is not counted); the
//! round's judged passes together are one **window**, recorded by the shared
//! [`attrsync_kafka::webhook_health::HealthRecorder`] exactly as fyle-sync records its own: the
//! workspace's `webhook_health` row is stepped ([`attrsync_core::webhook_health::step`]) and a
//! change of state is written with a `WebhookHealthChanged` event (source `qbo`) on
//! `sync.webhook-health.v1` through the outbox in the same transaction, fenced by the round's
//! lease, and counted in `qbo_sync_webhook_health_changes_total{state}`.
//!
//! Failure policy: a round whose judged passes did not all complete (QBO or the database
//! failing, a pass held elsewhere) steps no health — an incomplete window proves nothing — but
//! still records its time, so a failing workspace is retried at its interval, not every tick.
//! An expired realm is not scheduled (see [`crate::connection`]). Rounds run one after the
//! other; the task checks for shutdown between rounds and never abandons a pass half-way.

use std::time::Duration;

use attrsync_db::{
    DbError, Pool,
    lease::{self, Lease},
};
use attrsync_kafka::{
    relay::RelayHandle,
    webhook_health::{self as health, HealthRecorder, Source, Window},
    workspaces::{self, Lookup, ProjectedWorkspace, WorkspaceDirectory},
};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tokio_util::sync::CancellationToken;

use crate::{
    config::ReconcileConfig,
    pull::{self, PassKind, PassPlan, Puller},
    rules::SyncEntity,
    schema::{qbo_credentials as qc, qbo_sync_state as state},
    settings,
};

/// Who records qbo-sync's health: metric names, envelope producer, event source.
pub(crate) const SOURCE: Source = Source {
    metric_prefix: "qbo_sync",
    producer: "qbo-sync",
    webhooks: "qbo",
};

/// A realm's credentials status that is scheduled.
pub(crate) const CONNECTED: &str = "CONNECTED";

/// What a round does with one entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Never pulled: a full pass that judges nothing.
    Baseline,
    /// Webhook mode: an incremental pass, judged.
    Reconcile,
    /// Webhook mode, full pass due: a full pass, judged (finds deletions no webhook or CDC
    /// answer brought, and reads past a CDC answer that stopped at its cap).
    ReconcileFull,
    /// Tax codes of a workspace on webhooks: an incremental pass, never judged (QBO sends no
    /// webhook for them).
    Refresh,
    /// Polling mode, full pass due (the 24-hour rule).
    Full,
    /// Polling mode, pulled recently.
    Nothing,
}

impl Work {
    /// The pass this work runs; `None` for [`Work::Nothing`].
    pub fn plan(self, judge_before: DateTime<Utc>) -> Option<PassPlan> {
        let (kind, judged) = match self {
            Work::Nothing => return None,
            Work::Baseline | Work::Full => (PassKind::Full, false),
            Work::Refresh => (PassKind::Incremental, false),
            Work::Reconcile => (PassKind::Incremental, true),
            Work::ReconcileFull => (PassKind::Full, true),
        };
        Some(PassPlan {
            kind,
            scheduled: true,
            judge_before: judged.then_some(judge_before),
        })
    }
}

/// Whether mapping's flag puts `entity` of `workspace` on webhooks (the per-entity override,
/// else the global QBO flag) — the flag ingest applies. Tax codes follow it too, but never
/// arrive by webhook (see [`work_for`]).
pub fn webhooks_on(workspace: &ProjectedWorkspace, entity: SyncEntity) -> bool {
    workspace.qbo_webhooks_enabled_for(entity.as_str())
}

/// Whether `entity` is reconciled and judged: on webhooks, and an entity QBO sends them for.
pub fn webhook_mode(workspace: &ProjectedWorkspace, entity: SyncEntity) -> bool {
    entity.arrives_by_webhook() && webhooks_on(workspace, entity)
}

/// What a round does with an entity (pure; see the module doc). `webhooks_on` is mapping's
/// flag for it.
pub fn work_for(
    entity: SyncEntity,
    webhooks_on: bool,
    watermark: Option<DateTime<Utc>>,
    last_full: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    min_interval: Duration,
) -> Work {
    let full_due = !pull::recently_synced(last_full, now, min_interval, false);
    if !webhooks_on {
        return if full_due { Work::Full } else { Work::Nothing };
    }
    match (watermark, entity.arrives_by_webhook(), full_due) {
        (None, _, _) => Work::Baseline,
        (Some(_), true, true) => Work::ReconcileFull,
        (Some(_), true, false) => Work::Reconcile,
        (Some(_), false, true) => Work::Full,
        (Some(_), false, false) => Work::Refresh,
    }
}

/// When `realm`'s credentials were stored, if it is connected (the anchor of a workspace's
/// first round).
pub(crate) async fn connected_at(
    conn: &mut AsyncPgConnection,
    realm: &str,
) -> QueryResult<Option<DateTime<Utc>>> {
    qc::table
        .find(realm)
        .filter(qc::status.eq(CONNECTED))
        .select(qc::connected_at)
        .first(conn)
        .await
        .optional()
}

/// An entity's state row: its name, watermark and last full pull.
type LastSync = (String, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// The scheduler task. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Scheduler {
    pub(crate) pool: Pool,
    pub(crate) puller: Puller,
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
    /// Runs until `shutdown`; with `reconcile.enabled = false` it only waits for it.
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        if !self.config.enabled {
            tracing::info!("scheduled QBO rounds are off (reconcile.enabled = false)");
            shutdown.cancelled().await;
            return;
        }
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.config.tick) => self.tick(&shutdown).await,
            }
        }
    }

    async fn tick(&self, shutdown: &CancellationToken) {
        let scheduled = match self.scheduled_workspaces().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "could not read which workspaces are due; next tick");
                return;
            }
        };
        let now = Utc::now();
        for &(workspace_id, connected_at, ref row) in &scheduled {
            if shutdown.is_cancelled() {
                return;
            }
            if health::due(row.as_ref(), connected_at, now, self.recorder.schedule()) {
                self.round(workspace_id).await;
            }
        }
        self.recorder
            .set_gauges(scheduled.iter().map(|(_, _, row)| {
                row.as_ref()
                    .map(health::HealthRow::health)
                    .unwrap_or_default()
            }));
    }

    /// Every live workspace of a connected realm, when the realm connected, and its health
    /// row (read before this tick's rounds).
    async fn scheduled_workspaces(
        &self,
    ) -> Result<Vec<(i64, DateTime<Utc>, Option<health::HealthRow>)>, DbError> {
        let mut conn = self.pool.get().await?;
        let realms: Vec<(String, DateTime<Utc>)> = qc::table
            .filter(qc::status.eq(CONNECTED))
            .select((qc::realm_id, qc::connected_at))
            .order(qc::realm_id)
            .load(&mut conn)
            .await?;
        let mut out: Vec<(i64, DateTime<Utc>)> = Vec::new();
        for (realm, connected_at) in realms {
            for w in workspaces::find_by_realm(&mut conn, &realm).await? {
                out.push((w.workspace_id, connected_at));
            }
        }
        let ids: Vec<i64> = out.iter().map(|(id, _)| *id).collect();
        let mut rows = health::load_many(&mut conn, &ids).await?;
        Ok(out
            .into_iter()
            .map(|(id, at)| (id, at, rows.remove(&id)))
            .collect())
    }

    /// One round of one workspace, under its lease (see the module doc).
    async fn round(&self, workspace_id: i64) {
        let name = format!("qbo-round:{workspace_id}");
        let held = match lease::acquire(&self.pool, &name, &self.holder, self.lease_ttl).await {
            Ok(Some(held)) => held,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(workspace_id, error = %e, "could not take a round lease");
                return;
            }
        };
        let renewer = lease::keep_renewed(self.pool.clone(), held.clone(), self.lease_ttl);
        let result = self.round_held(workspace_id, &held).await;
        renewer.abort();
        if let Err(e) = lease::release(&self.pool, &held).await {
            tracing::warn!(error = %e, lease = %held.name, "could not release a round lease; it expires");
        }
        self.relay.wake();
        if let Err(e) = result {
            tracing::warn!(workspace_id, error = %e, "QBO round failed");
        }
    }

    async fn round_held(&self, workspace_id: i64, held: &Lease) -> Result<(), String> {
        let started = Utc::now();
        let workspace = match self.directory.lookup(workspace_id).await {
            Lookup::Found(w) if !w.deleted => w,
            Lookup::Found(_) | Lookup::Unknown => return Ok(()),
            Lookup::Unavailable(e) => return Err(e),
        };
        // Due still? Another replica may have finished this round while we waited.
        let last = {
            let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
            let Some(realm) = workspace.qbo_realm_id.as_deref() else {
                return Ok(());
            };
            let Some(connected) = connected_at(&mut conn, realm)
                .await
                .map_err(|e| e.to_string())?
            else {
                return Ok(());
            };
            let row = health::load(&mut conn, workspace_id)
                .await
                .map_err(|e| e.to_string())?;
            if !health::due(row.as_ref(), connected, started, self.recorder.schedule()) {
                return Ok(());
            }
            state::table
                .filter(state::workspace_id.eq(workspace_id))
                .select((
                    state::qbo_entity,
                    state::watermark,
                    state::last_full_sync_at,
                ))
                .load::<LastSync>(&mut conn)
                .await
                .map_err(|e| e.to_string())?
        };
        let grace = chrono::Duration::from_std(self.config.grace).unwrap_or_default();
        let judge_before = started - grace;
        let plans: Vec<(SyncEntity, PassPlan)> = SyncEntity::ALL
            .into_iter()
            .filter_map(|entity| {
                let (watermark, last_full) = last
                    .iter()
                    .find(|(e, ..)| e == entity.as_str())
                    .map_or((None, None), |(_, w, f)| (*w, *f));
                let work = work_for(
                    entity,
                    webhooks_on(&workspace, entity),
                    watermark,
                    last_full,
                    started,
                    self.min_interval,
                );
                work.plan(judge_before).map(|plan| (entity, plan))
            })
            .collect();
        let window = match self.puller.round(&settings::of(&workspace), &plans).await {
            Ok(results) => {
                let mut window = Window::default();
                for ((entity, outcome), (_, plan)) in results.into_iter().zip(&plans) {
                    let outcome = match outcome {
                        Ok(p) if p.outcome == "HELD_ELSEWHERE" => None,
                        Ok(p) => Some(u64::from(p.missed_webhooks)),
                        Err(e) => {
                            tracing::warn!(workspace_id, %entity, error = %e, "a scheduled QBO pass failed; the window is incomplete");
                            None
                        }
                    };
                    window.add(plan.judge_before.is_some(), entity.as_str(), outcome);
                }
                window
            }
            Err(e) => {
                // Still a round: the next one is an interval away, not a tick.
                self.record(workspace_id, held, started, &Window::failed())
                    .await?;
                return Err(e.to_string());
            }
        };
        self.record(workspace_id, held, started, &window).await
    }

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
    use serde_json::json;

    use super::*;

    fn at(hours_ago: i64) -> Option<DateTime<Utc>> {
        Some(now() - chrono::Duration::hours(hours_ago))
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_714_651_200, 0).unwrap_or_default()
    }

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn projected(global: bool, by_entity: serde_json::Value) -> ProjectedWorkspace {
        ProjectedWorkspace {
            workspace_id: 7,
            fyle_org_id: "or1".into(),
            qbo_realm_id: Some("123".into()),
            fyle_webhook_sync_enabled: true,
            fyle_webhook_by_type: json!({}),
            qbo_webhook_sync_enabled: global,
            qbo_webhook_by_entity: by_entity,
            deleted: false,
            version: 1,
            snapshot: Vec::new(),
        }
    }

    #[test]
    fn webhook_mode_entities_are_reconciled_after_their_baseline_and_fully_once_a_day() {
        let v = SyncEntity::Vendor;
        assert_eq!(work_for(v, true, None, None, now(), DAY), Work::Baseline);
        assert_eq!(work_for(v, true, at(1), at(1), now(), DAY), Work::Reconcile);
        // The watermark is an hour old, the last full pass 30 hours: a judged full pass.
        assert_eq!(
            work_for(v, true, at(1), at(30), now(), DAY),
            Work::ReconcileFull
        );
        let plan = Work::ReconcileFull.plan(now()).expect("a pass");
        assert_eq!(
            (plan.kind, plan.judge_before),
            (PassKind::Full, Some(now()))
        );
    }

    #[test]
    fn tax_codes_are_refreshed_but_never_judged() {
        let t = SyncEntity::TaxCode;
        assert_eq!(work_for(t, true, at(1), at(1), now(), DAY), Work::Refresh);
        assert_eq!(work_for(t, true, at(1), at(30), now(), DAY), Work::Full);
        let plan = Work::Refresh.plan(now()).expect("a pass");
        assert_eq!(plan.judge_before, None);
        assert_eq!(plan.kind, PassKind::Incremental);
        assert!(!webhook_mode(&projected(true, json!({})), t));
    }

    #[test]
    fn entities_not_on_webhooks_keep_the_24_hour_rule() {
        let c = SyncEntity::Customer;
        assert_eq!(work_for(c, false, None, None, now(), DAY), Work::Full);
        assert_eq!(work_for(c, false, at(1), at(1), now(), DAY), Work::Nothing);
        assert_eq!(work_for(c, false, at(1), at(25), now(), DAY), Work::Full);
        for work in [Work::Full, Work::Baseline] {
            let plan = work.plan(now()).expect("a pass");
            assert_eq!((plan.kind, plan.judge_before), (PassKind::Full, None));
            assert!(plan.scheduled);
        }
        assert_eq!(Work::Nothing.plan(now()), None);
        assert_eq!(
            Work::Reconcile.plan(now()).map(|p| p.judge_before),
            Some(Some(now()))
        );
    }

    #[test]
    fn the_mode_is_mappings_flag_per_entity_else_the_global_one() {
        let off_for_customers = projected(true, json!({"Customer": false}));
        assert!(webhook_mode(&off_for_customers, SyncEntity::Vendor));
        assert!(!webhook_mode(&off_for_customers, SyncEntity::Customer));
        let all_off = projected(false, json!({"vendor": true}));
        assert!(!webhook_mode(&all_off, SyncEntity::Customer));
        assert!(
            webhook_mode(&all_off, SyncEntity::Vendor),
            "case-insensitive"
        );
    }
}
