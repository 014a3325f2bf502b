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
//! missed total steps the workspace's state (`webhook_health` table). A change of state is
//! written with a `WebhookHealthChanged` event on `sync.webhook-health.v1` through the outbox,
//! in the same transaction (fenced by the round's lease), and counted in
//! `fyle_sync_webhook_health_changes_total{state}`.
//!
//! Failure policy: a round whose judged passes did not all complete (Fyle or the database
//! failing, a pass held elsewhere) steps no health — an incomplete window proves nothing — but
//! still records its time, so a failing workspace is retried at its interval, not every tick.
//! A broken connection is not scheduled (see [`crate::connection`]). Rounds run one after the
//! other; the task checks for shutdown between rounds and never abandons a pass half-way.

use std::time::Duration;

use attrsync_config::KafkaConfig;
use attrsync_core::{
    webhook::FyleResource,
    webhook_health::{self, Health, HealthState},
};
use attrsync_db::{
    DbError, Pool,
    lease::{self, Lease},
    outbox,
};
use attrsync_kafka::{
    envelope,
    relay::RelayHandle,
    topics::{self, TopicPayload as _},
    workspaces::{Lookup, ProjectedWorkspace, WorkspaceDirectory},
};
use attrsync_proto::v1::{self as proto, WebhookHealthChanged};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tokio_util::sync::CancellationToken;

use crate::{
    config::ReconcileConfig,
    connection::CONNECTED,
    pull::{self, PULLED, PassPlan, Puller, RunKind},
    schema::{fyle_connections as fc, webhook_health as wh},
    subscription::Subscriptions,
};

/// The producer named in the envelopes of health events.
const PRODUCER: &str = "fyle-sync";

/// How often a workspace in `health` is reconciled (pure).
pub fn poll_interval(health: Health, config: &ReconcileConfig) -> Duration {
    match health {
        Health::Healthy => config.interval,
        Health::Degraded => config.degraded_interval,
    }
}

/// When a workspace's next round is due: an interval (by its health) after its last round,
/// or after it connected when it has had none (pure).
pub fn next_round_at(
    last_round: Option<DateTime<Utc>>,
    connected_at: DateTime<Utc>,
    health: Health,
    config: &ReconcileConfig,
) -> DateTime<Utc> {
    let interval =
        chrono::Duration::from_std(poll_interval(health, config)).unwrap_or(chrono::Duration::MAX);
    let anchor = last_round.unwrap_or(connected_at);
    anchor.checked_add_signed(interval).unwrap_or(anchor)
}

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

/// A workspace's stored health row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = wh)]
pub(crate) struct HealthRow {
    pub(crate) state: String,
    pub(crate) clean_windows: i32,
    pub(crate) last_window_at: Option<DateTime<Utc>>,
    pub(crate) last_window_missed: i64,
    pub(crate) missed_total: i64,
    pub(crate) changed_at: Option<DateTime<Utc>>,
    pub(crate) last_round_at: Option<DateTime<Utc>>,
}

impl HealthRow {
    pub(crate) fn health(&self) -> Health {
        Health::parse(&self.state).unwrap_or_default()
    }
}

/// The workspace's health row, if it has had a round.
pub(crate) async fn health_row(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
) -> QueryResult<Option<HealthRow>> {
    wh::table
        .find(workspace_id)
        .select(HealthRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// A connected workspace, when it connected, its health and last round.
type DueRow = (i64, DateTime<Utc>, Option<String>, Option<DateTime<Utc>>);

/// What one round found, for the window.
#[derive(Debug, Default)]
struct Window {
    /// Judged passes attempted.
    judged: u32,
    /// All of them completed.
    complete: bool,
    missed: u64,
    missed_by_resource: Vec<(String, u64)>,
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
    pub(crate) kafka: KafkaConfig,
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
        let rows: Vec<DueRow> = fc::table
            .left_join(wh::table.on(wh::workspace_id.eq(fc::workspace_id)))
            .filter(fc::status.eq(CONNECTED))
            .select((
                fc::workspace_id,
                fc::connected_at,
                wh::state.nullable(),
                wh::last_round_at.nullable(),
            ))
            .order(fc::workspace_id)
            .load(&mut conn)
            .await?;
        let now = Utc::now();
        Ok(rows
            .into_iter()
            .filter(|(_, connected_at, state, last_round)| {
                let health = state.as_deref().and_then(Health::parse).unwrap_or_default();
                next_round_at(*last_round, *connected_at, health, &self.config) <= now
            })
            .map(|(id, ..)| id)
            .collect())
    }

    async fn set_gauges(&self) -> Result<(), DbError> {
        let mut conn = self.pool.get().await?;
        let states: Vec<Option<String>> = fc::table
            .left_join(wh::table.on(wh::workspace_id.eq(fc::workspace_id)))
            .filter(fc::status.eq(CONNECTED))
            .select(wh::state.nullable())
            .load(&mut conn)
            .await?;
        for health in Health::ALL {
            let n = states
                .iter()
                .filter(|s| s.as_deref().and_then(Health::parse).unwrap_or_default() == health)
                .count();
            metrics::gauge!("fyle_sync_webhook_health_workspaces", "state" => health.as_str())
                .set(n as f64);
        }
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
            let row = health_row(&mut conn, workspace_id)
                .await
                .map_err(|e| e.to_string())?;
            let health = row.as_ref().map(HealthRow::health).unwrap_or_default();
            let last = row.and_then(|r| r.last_round_at);
            if status != CONNECTED
                || next_round_at(last, connected_at, health, &self.config) > started
            {
                return Ok(());
            }
        }
        let window = self.passes(workspace_id, started).await;
        let window = match window {
            Ok(w) => w,
            Err(e) => {
                // Still a round: the next one is an interval away, not a tick.
                self.record(workspace_id, held, started, &Window::default())
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
        let mut window = Window {
            complete: true,
            ..Window::default()
        };
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
            window.judged += u32::from(judged);
            match self
                .puller
                .pull_resource(&client, workspace_id, &resource, plan)
                .await
            {
                Ok(pulled) if pulled.outcome == "HELD_ELSEWHERE" => {
                    window.complete &= !judged;
                }
                Ok(pulled) => {
                    let missed = u64::from(pulled.missed_webhooks);
                    window.missed += missed;
                    if missed > 0 {
                        window
                            .missed_by_resource
                            .push((resource.as_str().to_owned(), missed));
                    }
                }
                Err(e @ crate::connection::FyleError::Broken(..)) => {
                    return Err(e.to_string());
                }
                Err(e) => {
                    tracing::warn!(workspace_id, resource = %resource, error = %e, "a scheduled pass failed; the window is incomplete");
                    window.complete &= !judged;
                }
            }
        }
        Ok(window)
    }

    /// Records the round and, for a complete window, steps the workspace's health; a change
    /// of state goes out as an event in the same transaction.
    async fn record(
        &self,
        workspace_id: i64,
        held: &Lease,
        started: DateTime<Utc>,
        window: &Window,
    ) -> Result<(), String> {
        let policy = self.config.policy();
        let step_window = window.judged > 0 && window.complete;
        let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
        let changed = conn
            .transaction::<_, DbError, _>(async |conn| {
                if !pull::lease_live(conn, held).await? {
                    return Ok(None);
                }
                let row = wh::table
                    .find(workspace_id)
                    .select(HealthRow::as_select())
                    .for_update()
                    .first(conn)
                    .await
                    .optional()?;
                let current = HealthState {
                    health: row.as_ref().map(HealthRow::health).unwrap_or_default(),
                    clean_windows: row
                        .as_ref()
                        .map_or(0, |r| u32::try_from(r.clean_windows).unwrap_or(0)),
                };
                let missed = i64::try_from(window.missed).unwrap_or(i64::MAX);
                if !step_window {
                    diesel::insert_into(wh::table)
                        .values((
                            wh::workspace_id.eq(workspace_id),
                            wh::last_round_at.eq(started),
                            wh::missed_total.eq(missed),
                        ))
                        .on_conflict(wh::workspace_id)
                        .do_update()
                        .set((
                            wh::last_round_at.eq(started),
                            wh::missed_total.eq(wh::missed_total + missed),
                        ))
                        .execute(conn)
                        .await?;
                    return Ok(None);
                }
                let step = webhook_health::step(current, window.missed, policy);
                let next = step.next;
                let clean = i32::try_from(next.clean_windows).unwrap_or(i32::MAX);
                let changed_at = step
                    .changed
                    .then_some(started)
                    .or(row.as_ref().and_then(|r| r.changed_at));
                diesel::insert_into(wh::table)
                    .values((
                        wh::workspace_id.eq(workspace_id),
                        wh::state.eq(next.health.as_str()),
                        wh::clean_windows.eq(clean),
                        wh::last_window_at.eq(started),
                        wh::last_window_missed.eq(missed),
                        wh::missed_total.eq(missed),
                        wh::changed_at.eq(changed_at),
                        wh::last_round_at.eq(started),
                    ))
                    .on_conflict(wh::workspace_id)
                    .do_update()
                    .set((
                        wh::state.eq(next.health.as_str()),
                        wh::clean_windows.eq(clean),
                        wh::last_window_at.eq(started),
                        wh::last_window_missed.eq(missed),
                        wh::missed_total.eq(wh::missed_total + missed),
                        wh::changed_at.eq(changed_at),
                        wh::last_round_at.eq(started),
                    ))
                    .execute(conn)
                    .await?;
                if !step.changed {
                    return Ok(None);
                }
                let event = WebhookHealthChanged {
                    source: "fyle".into(),
                    previous: proto_health(current.health) as i32,
                    current: proto_health(next.health) as i32,
                    missed_in_window: window.missed,
                    missed_by_resource: window.missed_by_resource.iter().cloned().collect(),
                    clean_windows: next.clean_windows,
                    degrade_above: policy.degrade_above,
                    recover_after: policy.recover_after,
                    poll_interval_seconds: u32::try_from(
                        poll_interval(next.health, &self.config).as_secs(),
                    )
                    .unwrap_or(u32::MAX),
                    changed_at: Some(attrsync_proto::time::to_proto(started)),
                };
                let topic = self.kafka.topic(topics::WEBHOOK_HEALTH.name());
                let envelope = envelope::new(
                    workspace_id,
                    PRODUCER,
                    attrsync_proto::time::now(),
                    event.into_payload(),
                );
                outbox::enqueue(conn, &[envelope::outbox_row(topic, &envelope)]).await?;
                Ok(Some((current.health, next.health)))
            })
            .await
            .map_err(|e| e.to_string())?;
        if let Some((from, to)) = changed {
            metrics::counter!("fyle_sync_webhook_health_changes_total", "state" => to.as_str())
                .increment(1);
            let interval = poll_interval(to, &self.config);
            match to {
                Health::Degraded => tracing::warn!(
                    workspace_id,
                    %from,
                    %to,
                    missed = window.missed,
                    poll_interval = ?interval,
                    "webhook health DEGRADED: webhooks are being missed; polling takes over"
                ),
                Health::Healthy => tracing::info!(
                    workspace_id,
                    %from,
                    %to,
                    poll_interval = ?interval,
                    "webhook health back to HEALTHY"
                ),
            }
        }
        metrics::counter!(
            "fyle_sync_rounds_total",
            "window" => match (window.judged > 0, window.complete) {
                (false, _) => "none",
                (true, true) => "complete",
                (true, false) => "incomplete",
            }
        )
        .increment(1);
        Ok(())
    }
}

/// The event's enum for a state.
pub(crate) fn proto_health(health: Health) -> proto::WebhookHealth {
    match health {
        Health::Healthy => proto::WebhookHealth::Healthy,
        Health::Degraded => proto::WebhookHealth::Degraded,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn config() -> ReconcileConfig {
        ReconcileConfig {
            enabled: true,
            tick: Duration::from_secs(30),
            interval: Duration::from_secs(900),
            degraded_interval: Duration::from_secs(120),
            grace: Duration::from_secs(60),
            degrade_above: 3,
            recover_after: 3,
        }
    }

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 2, h, m, 0)
            .single()
            .unwrap_or_default()
    }

    #[test]
    fn degraded_workspaces_are_polled_at_the_shorter_interval() {
        let c = config();
        let last = Some(at(12, 0));
        assert_eq!(
            next_round_at(last, at(9, 0), Health::Healthy, &c),
            at(12, 15)
        );
        assert_eq!(
            next_round_at(last, at(9, 0), Health::Degraded, &c),
            at(12, 2)
        );
        // The first round is an interval after connecting.
        assert_eq!(
            next_round_at(None, at(9, 0), Health::Healthy, &c),
            at(9, 15)
        );
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
