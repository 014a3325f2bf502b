//! Health that tells the truth.
//!
//! Liveness (`/healthz`) says only that the process answers. Readiness — `/readyz` and the
//! gRPC health service (`grpc.health.v1`, the empty name and every API of the service) — is
//! NOT_SERVING while any of these holds:
//! - a task of the service ended before shutdown (a consumer loop, the relay, a server);
//! - a consumer has held work (a message in hand or a paused partition) without finishing
//!   anything for `health.consumer_stalled_after` — this includes the workspace projection's
//!   consumer, so a projection that fell behind shows;
//! - the outbox relay has been failing for `health.relay_failing_after`;
//! - the database does not answer a ping within a second.
//!
//! Answers name the failing check and how long it has failed, never an error's text (a
//! database error can carry schema or data), so they are safe to expose to a load balancer.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use attrsync_config::HealthConfig;
use attrsync_db::Pool;
use attrsync_kafka::{ConsumerProgress, relay::RelayHandle};
use serde::Serialize;
use tonic_health::{ServingStatus, server::HealthReporter};

/// Everything a service's readiness depends on.
pub struct Health {
    config: HealthConfig,
    pool: Pool,
    consumers: Vec<(String, Arc<ConsumerProgress>)>,
    relay: RelayHandle,
    died: Arc<Mutex<Vec<&'static str>>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("consumers", &self.consumers.len())
            .finish_non_exhaustive()
    }
}

/// The outcome of every check, as `/readyz` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub ready: bool,
    /// Check name → `ok` or what is wrong.
    pub checks: BTreeMap<String, String>,
}

impl Health {
    pub(crate) fn new(
        config: HealthConfig,
        pool: Pool,
        consumers: Vec<(String, Arc<ConsumerProgress>)>,
        relay: RelayHandle,
        died: Arc<Mutex<Vec<&'static str>>>,
    ) -> Self {
        Self {
            config,
            pool,
            consumers,
            relay,
            died,
        }
    }

    /// Evaluates every check now.
    pub async fn report(&self) -> Report {
        let database = matches!(
            tokio::time::timeout(Duration::from_secs(1), attrsync_db::ping(&self.pool)).await,
            Ok(Ok(()))
        );
        self.report_with(chrono::Utc::now().timestamp_millis(), database)
    }

    fn report_with(&self, now_ms: i64, database_answers: bool) -> Report {
        let mut checks = BTreeMap::new();
        let mut ready = true;
        let mut record = |name: String, problem: Option<String>| {
            ready &= problem.is_none();
            checks.insert(name, problem.unwrap_or_else(|| "ok".to_owned()));
        };
        record(
            "database".to_owned(),
            (!database_answers).then(|| "does not answer".to_owned()),
        );
        for (name, progress) in &self.consumers {
            let problem = if progress.has_exited() {
                Some("stopped".to_owned())
            } else {
                progress
                    .stuck_for(now_ms)
                    .filter(|stuck| *stuck >= self.config.consumer_stalled_after)
                    .map(|stuck| {
                        format!(
                            "no progress for {}s with work pending ({} partition(s) held)",
                            stuck.as_secs(),
                            progress.held_partitions()
                        )
                    })
            };
            record(format!("consumer {name}"), problem);
        }
        record(
            "outbox relay".to_owned(),
            self.relay
                .failing_for(now_ms)
                .filter(|failing| *failing >= self.config.relay_failing_after)
                .map(|failing| format!("failing for {}s", failing.as_secs())),
        );
        let died = self.died.lock().map(|d| d.clone()).unwrap_or_default();
        record(
            "tasks".to_owned(),
            (!died.is_empty()).then(|| format!("ended unexpectedly: {}", died.join(", "))),
        );
        Report { ready, checks }
    }

    /// Sets the gRPC health of the service and each of its APIs from a fresh report;
    /// returns whether it is ready.
    pub(crate) async fn publish_once(
        &self,
        reporter: &HealthReporter,
        services: &[&'static str],
        last: Option<bool>,
    ) -> bool {
        let report = self.report().await;
        if last != Some(report.ready) {
            let status = if report.ready {
                ServingStatus::Serving
            } else {
                tracing::warn!(checks = ?report.checks, "service not ready");
                ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            for service in services {
                reporter.set_service_status(*service, status).await;
            }
        }
        report.ready
    }

    /// Keeps the gRPC health service in line with [`Health::report`], every second.
    pub(crate) async fn publish_to_grpc(
        self: Arc<Self>,
        reporter: HealthReporter,
        services: Vec<&'static str>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut last = None;
        loop {
            last = Some(self.publish_once(&reporter, &services, last).await);
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(progress: Arc<ConsumerProgress>, relay: RelayHandle) -> Health {
        let manager = diesel_async::pooled_connection::AsyncDieselConnectionManager::<
            diesel_async::AsyncPgConnection,
        >::new("postgres://nobody@127.0.0.1:1/none");
        let pool = diesel_async::pooled_connection::deadpool::Pool::builder(manager)
            .build()
            .expect("pool");
        Health::new(
            HealthConfig::default(),
            pool,
            vec![("t".into(), progress)],
            relay,
            Arc::default(),
        )
    }

    #[test]
    fn an_idle_consumer_and_a_passing_relay_are_ready_and_a_dead_database_is_not() {
        let h = health(Arc::default(), RelayHandle::default());
        let report = h.report_with(1_000_000, true);
        assert!(report.ready, "{report:?}");
        let report = h.report_with(1_000_000, false);
        assert!(!report.ready);
        assert_eq!(report.checks["database"], "does not answer");
    }

    #[test]
    fn a_task_that_died_makes_the_service_not_ready() {
        let h = health(Arc::default(), RelayHandle::default());
        h.died.lock().expect("lock").push("relay");
        let report = h.report_with(1_000_000, true);
        assert!(!report.ready);
        assert_eq!(report.checks["tasks"], "ended unexpectedly: relay");
    }
}
