//! Webhook health, persisted: what a sync service's scheduler records after each round, written
//! once for every service that judges its webhooks (fyle-sync, qbo-sync).
//!
//! The rule is [`attrsync_core::webhook_health`] (pure: [`step`], [`next_round_at`]); this
//! module is its storage and its announcement. Per workspace, one row in the service's own
//! `webhook_health` table holds the state, the schedule anchor and the counts. Every service
//! that uses this module creates that table **in its own schema, by its own migration, with
//! exactly this shape** (fyle-sync: `2026-12-03-000004_reconcile_and_health`, qbo-sync:
//! `2026-12-07-000003_reconcile_and_health`); it is not a platform table because only the
//! services that receive webhooks judge them:
//! ```sql
//! CREATE TABLE webhook_health (
//!     workspace_id       BIGINT PRIMARY KEY,
//!     state              TEXT NOT NULL DEFAULT 'HEALTHY' CHECK (state IN ('HEALTHY', 'DEGRADED')),
//!     clean_windows      INTEGER NOT NULL DEFAULT 0,
//!     last_window_at     TIMESTAMPTZ,
//!     last_window_missed BIGINT NOT NULL DEFAULT 0,
//!     missed_total       BIGINT NOT NULL DEFAULT 0,
//!     changed_at         TIMESTAMPTZ,
//!     last_round_at      TIMESTAMPTZ
//! );
//! CREATE INDEX webhook_health_state ON webhook_health (state);
//! ```
//! A workspace without a row is HEALTHY and has never had a round.
//!
//! [`HealthRecorder::record`] records one round in one transaction, fenced by the round's
//! lease (a replica that lost it writes nothing): the round's time always (the next round is
//! due an interval after it); for a complete [`Window`], the [`step`] of the state, the
//! window's missed count and the total; and when the state changed, a `WebhookHealthChanged`
//! event on `sync.webhook-health.v1` through the outbox in the same transaction — so the row
//! and the event are committed together or not at all, and the relay delivers the event at
//! least once (consumers key on the workspace and `changed_at`). After the commit it counts
//! `<service>_webhook_health_changes_total{state}` and `<service>_rounds_total{window}` and logs
//! the change (WARN when DEGRADED, INFO when HEALTHY again); [`HealthRecorder::set_gauges`]
//! sets `<service>_webhook_health_workspaces{state}`. Metric names carry the service
//! (`fyle_sync_…`, `qbo_sync_…`), as every metric of the project does.
//!
//! Failure policy: a window whose judged passes did not all complete steps nothing — it proves
//! nothing either way — but its round is recorded, so a failing workspace is retried at its
//! interval, not every tick. A database failure fails the record (the caller logs it; the round
//! is then due again at once, which is safe: passes are idempotent).
//!
//! [`step`]: attrsync_core::webhook_health::step
//! [`next_round_at`]: attrsync_core::webhook_health::next_round_at

use std::{collections::HashMap, time::Duration};

use attrsync_config::{KafkaConfig, ReconcileConfig};
use attrsync_core::webhook_health::{
    self as rule, Health, HealthPolicy, HealthState, Schedule, poll_interval,
};
use attrsync_db::{
    DbError, Pool,
    lease::{self, Lease},
    outbox,
};
use attrsync_proto::v1::{self as proto, WebhookHealthChanged};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::{
    envelope,
    topics::{self, TopicPayload as _},
};

diesel::table! {
    webhook_health (workspace_id) {
        workspace_id -> BigInt,
        state -> Text,
        clean_windows -> Integer,
        last_window_at -> Nullable<Timestamptz>,
        last_window_missed -> BigInt,
        missed_total -> BigInt,
        changed_at -> Nullable<Timestamptz>,
        last_round_at -> Nullable<Timestamptz>,
    }
}

use self::webhook_health as wh;

/// A workspace's stored health row.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = wh)]
pub struct HealthRow {
    pub state: String,
    pub clean_windows: i32,
    pub last_window_at: Option<DateTime<Utc>>,
    pub last_window_missed: i64,
    pub missed_total: i64,
    pub changed_at: Option<DateTime<Utc>>,
    pub last_round_at: Option<DateTime<Utc>>,
}

impl HealthRow {
    /// The stored state (HEALTHY for anything unreadable).
    pub fn health(&self) -> Health {
        Health::parse(&self.state).unwrap_or_default()
    }

    /// What [`rule::step`] remembers between windows.
    pub fn state(&self) -> HealthState {
        HealthState {
            health: self.health(),
            clean_windows: u32::try_from(self.clean_windows).unwrap_or(0),
        }
    }
}

/// The workspace's health row, if it has had a round.
pub async fn load(
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

/// The health rows of `workspace_ids` (those that have had a round).
pub async fn load_many(
    conn: &mut AsyncPgConnection,
    workspace_ids: &[i64],
) -> QueryResult<HashMap<i64, HealthRow>> {
    let rows: Vec<(i64, HealthRow)> = wh::table
        .filter(wh::workspace_id.eq_any(workspace_ids))
        .select((wh::workspace_id, HealthRow::as_select()))
        .load(conn)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Whether the round of a workspace with `row` (none: never had one) that connected at
/// `connected_at` is due at `now`.
pub fn due(
    row: Option<&HealthRow>,
    connected_at: DateTime<Utc>,
    now: DateTime<Utc>,
    schedule: &Schedule,
) -> bool {
    let health = row.map(HealthRow::health).unwrap_or_default();
    let last = row.and_then(|r| r.last_round_at);
    rule::next_round_at(last, connected_at, health, schedule) <= now
}

/// What one round found: one window of the health state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Judged passes attempted.
    pub judged: u32,
    /// All of them completed.
    pub complete: bool,
    /// Missed webhooks, in total and per resource / entity (those with none omitted).
    pub missed: u64,
    pub missed_by: Vec<(String, u64)>,
}

impl Default for Window {
    /// An empty window, complete until a judged pass fails.
    fn default() -> Self {
        Self {
            judged: 0,
            complete: true,
            missed: 0,
            missed_by: Vec::new(),
        }
    }
}

impl Window {
    /// A round that ran no pass at all (the workspace or its client could not be had).
    pub fn failed() -> Self {
        Self {
            complete: false,
            ..Self::default()
        }
    }

    /// Adds one pass's outcome: `Some(missed)` when it completed, `None` when it failed or was
    /// held elsewhere. Unjudged passes count nothing.
    pub fn add(&mut self, judged: bool, name: &str, outcome: Option<u64>) {
        if !judged {
            return;
        }
        self.judged += 1;
        match outcome {
            Some(0) => {}
            Some(missed) => {
                self.missed += missed;
                self.missed_by.push((name.to_owned(), missed));
            }
            None => self.complete = false,
        }
    }

    /// Whether the window steps the health state: at least one judged pass, all complete.
    pub fn steps(&self) -> bool {
        self.judged > 0 && self.complete
    }

    /// The `window` label of `<service>_rounds_total`.
    pub fn label(&self) -> &'static str {
        match (self.judged > 0, self.complete) {
            (false, _) => "none",
            (true, true) => "complete",
            (true, false) => "incomplete",
        }
    }
}

/// Who records: names for metrics, envelopes and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// Metric name prefix: `fyle_sync`, `qbo_sync`.
    pub metric_prefix: &'static str,
    /// The envelope's producer: `fyle-sync`, `qbo-sync`.
    pub producer: &'static str,
    /// The event's `source`: the webhook source judged, `fyle` or `qbo`.
    pub webhooks: &'static str,
}

/// Records rounds and health for one service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HealthRecorder {
    source: Source,
    kafka: KafkaConfig,
    policy: HealthPolicy,
    schedule: Schedule,
}

/// A change of state a round recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Changed {
    pub from: Health,
    pub to: Health,
}

impl HealthRecorder {
    pub fn new(source: Source, kafka: KafkaConfig, reconcile: &ReconcileConfig) -> Self {
        Self {
            source,
            kafka,
            policy: reconcile.policy(),
            schedule: reconcile.schedule(),
        }
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// How often a workspace in `health` is polled.
    pub fn poll_interval(&self, health: Health) -> Duration {
        poll_interval(health, &self.schedule)
    }

    /// Records `workspace_id`'s round started at `started` under `held` (see the module doc).
    /// `Ok(None)`: no change of state (or the lease was lost and nothing was written).
    pub async fn record(
        &self,
        pool: &Pool,
        workspace_id: i64,
        held: &Lease,
        started: DateTime<Utc>,
        window: &Window,
    ) -> Result<Option<Changed>, DbError> {
        let mut conn = pool.get().await?;
        let changed = conn
            .transaction::<_, DbError, _>(async |conn| {
                if !lease::is_live(conn, held).await? {
                    return Ok(None);
                }
                self.record_in(conn, workspace_id, started, window).await
            })
            .await?;
        metrics::counter!(
            format!("{}_rounds_total", self.source.metric_prefix),
            "window" => window.label()
        )
        .increment(1);
        if let Some(Changed { from, to }) = changed {
            metrics::counter!(
                format!("{}_webhook_health_changes_total", self.source.metric_prefix),
                "state" => to.as_str()
            )
            .increment(1);
            let interval = self.poll_interval(to);
            let webhooks = self.source.webhooks;
            match to {
                Health::Degraded => tracing::warn!(
                    workspace_id,
                    webhooks,
                    %from,
                    %to,
                    missed = window.missed,
                    poll_interval = ?interval,
                    "webhook health DEGRADED: webhooks are being missed; polling takes over"
                ),
                Health::Healthy => tracing::info!(
                    workspace_id,
                    webhooks,
                    %from,
                    %to,
                    poll_interval = ?interval,
                    "webhook health back to HEALTHY"
                ),
            }
        }
        Ok(changed)
    }

    /// The writes of [`record`](Self::record), in the caller's (lease-checked) transaction.
    async fn record_in(
        &self,
        conn: &mut AsyncPgConnection,
        workspace_id: i64,
        started: DateTime<Utc>,
        window: &Window,
    ) -> Result<Option<Changed>, DbError> {
        let row = wh::table
            .find(workspace_id)
            .select(HealthRow::as_select())
            .for_update()
            .first(conn)
            .await
            .optional()?;
        let current = row.as_ref().map(HealthRow::state).unwrap_or_default();
        let missed = i64::try_from(window.missed).unwrap_or(i64::MAX);
        if !window.steps() {
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
        let step = rule::step(current, window.missed, self.policy);
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
        let event = self.event(current, next, window, started);
        let topic = self.kafka.topic(topics::WEBHOOK_HEALTH.name());
        let envelope = envelope::new(
            workspace_id,
            self.source.producer,
            attrsync_proto::time::now(),
            event.into_payload(),
        );
        outbox::enqueue(conn, &[envelope::outbox_row(topic, &envelope)]).await?;
        Ok(Some(Changed {
            from: current.health,
            to: next.health,
        }))
    }

    /// The `WebhookHealthChanged` a change of state announces (pure).
    pub fn event(
        &self,
        previous: HealthState,
        next: HealthState,
        window: &Window,
        at: DateTime<Utc>,
    ) -> WebhookHealthChanged {
        WebhookHealthChanged {
            source: self.source.webhooks.to_owned(),
            previous: proto_health(previous.health) as i32,
            current: proto_health(next.health) as i32,
            missed_in_window: window.missed,
            missed_by_resource: window.missed_by.iter().cloned().collect::<HashMap<_, _>>(),
            clean_windows: next.clean_windows,
            degrade_above: self.policy.degrade_above,
            recover_after: self.policy.recover_after,
            poll_interval_seconds: u32::try_from(self.poll_interval(next.health).as_secs())
                .unwrap_or(u32::MAX),
            changed_at: Some(attrsync_proto::time::to_proto(at)),
        }
    }

    /// Sets `<service>_webhook_health_workspaces{state}` from the health of the service's
    /// connected workspaces.
    pub fn set_gauges(&self, healths: impl IntoIterator<Item = Health>) {
        for (health, n) in count_by_health(healths) {
            metrics::gauge!(
                format!("{}_webhook_health_workspaces", self.source.metric_prefix),
                "state" => health.as_str()
            )
            .set(n as f64);
        }
    }
}

/// Workspaces per state, every state listed (pure).
pub fn count_by_health(healths: impl IntoIterator<Item = Health>) -> [(Health, usize); 2] {
    let mut counts = Health::ALL.map(|h| (h, 0));
    for health in healths {
        if let Some(entry) = counts.iter_mut().find(|(h, _)| *h == health) {
            entry.1 += 1;
        }
    }
    counts
}

/// The event's enum for a state.
pub fn proto_health(health: Health) -> proto::WebhookHealth {
    match health {
        Health::Healthy => proto::WebhookHealth::Healthy,
        Health::Degraded => proto::WebhookHealth::Degraded,
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

    fn reconcile() -> ReconcileConfig {
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

    fn row(state: &str, last_round_at: Option<DateTime<Utc>>) -> HealthRow {
        HealthRow {
            state: state.into(),
            clean_windows: 0,
            last_window_at: None,
            last_window_missed: 0,
            missed_total: 0,
            changed_at: None,
            last_round_at,
        }
    }

    #[test]
    fn a_window_steps_only_when_every_judged_pass_completed() {
        let mut w = Window::default();
        assert!(!w.steps(), "nothing judged proves nothing");
        assert_eq!(w.label(), "none");
        w.add(false, "Vendor", None);
        assert!(!w.steps(), "an unjudged pass's failure is not the window's");
        w.add(true, "Vendor", Some(2));
        w.add(true, "Customer", Some(0));
        assert!(w.steps());
        assert_eq!((w.judged, w.missed), (2, 2));
        assert_eq!(w.missed_by, vec![("Vendor".to_owned(), 2)]);
        w.add(true, "Account", None);
        assert!(!w.steps());
        assert_eq!(w.label(), "incomplete");
        assert!(!Window::failed().steps());
    }

    #[test]
    fn a_round_is_due_an_interval_by_health_after_the_last() {
        let schedule = reconcile().schedule();
        let connected = at(9, 0);
        assert!(!due(None, connected, at(9, 14), &schedule));
        assert!(due(None, connected, at(9, 15), &schedule));
        let healthy = row("HEALTHY", Some(at(12, 0)));
        let degraded = row("DEGRADED", Some(at(12, 0)));
        assert!(!due(Some(&healthy), connected, at(12, 5), &schedule));
        assert!(due(Some(&degraded), connected, at(12, 5), &schedule));
    }

    #[test]
    fn the_event_names_the_source_the_policy_and_the_new_interval() {
        let recorder = HealthRecorder::new(
            Source {
                metric_prefix: "qbo_sync",
                producer: "qbo-sync",
                webhooks: "qbo",
            },
            KafkaConfig {
                bootstrap: "127.0.0.1:9092".into(),
                topic_prefix: String::new(),
                group_id: "qbo-sync".into(),
                partitions: 1,
                replication_factor: 1,
                max_attempts: 1,
                retry_backoff: Duration::from_millis(1),
                max_batch: 1,
            },
            &reconcile(),
        );
        let window = Window {
            judged: 2,
            complete: true,
            missed: 5,
            missed_by: vec![("Vendor".into(), 4), ("Customer".into(), 1)],
        };
        let e = recorder.event(
            HealthState::default(),
            HealthState {
                health: Health::Degraded,
                clean_windows: 0,
            },
            &window,
            at(12, 0),
        );
        assert_eq!(e.source, "qbo");
        assert_eq!(e.previous, proto::WebhookHealth::Healthy as i32);
        assert_eq!(e.current, proto::WebhookHealth::Degraded as i32);
        assert_eq!(e.missed_in_window, 5);
        assert_eq!(e.missed_by_resource.get("Vendor"), Some(&4));
        assert_eq!((e.degrade_above, e.recover_after), (3, 3));
        assert_eq!(e.poll_interval_seconds, 120);
    }

    #[test]
    fn workspaces_are_counted_per_state_every_state_listed() {
        let rows = [
            None,
            Some(row("DEGRADED", None)),
            Some(row("HEALTHY", None)),
        ];
        let healths = rows
            .iter()
            .map(|r| r.as_ref().map(HealthRow::health).unwrap_or_default());
        assert_eq!(
            count_by_health(healths),
            [(Health::Healthy, 2), (Health::Degraded, 1)]
        );
        assert_eq!(
            count_by_health([]),
            [(Health::Healthy, 0), (Health::Degraded, 0)]
        );
    }
}
