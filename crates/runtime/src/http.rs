//! The service's HTTP listener: `/healthz` (liveness), `/readyz` (readiness, see
//! [`crate::health`]) and `/metrics` (Prometheus text) on every service, plus the routes a
//! service declares (ingest's webhook edge).

use std::sync::{Arc, OnceLock};

use actix_web::{HttpResponse, web};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::health::Health;

/// Routes a service adds to its HTTP listener.
pub type HttpRoutes = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// The process-wide Prometheus recorder (installed once; several services in one test process
/// share it).
pub fn metrics_handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        // Latency histograms (seconds) get buckets, not summaries, so they aggregate across pods.
        let builder = PrometheusBuilder::new();
        let builder = builder
            .set_buckets(&[
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test harness): then ours only renders
        // what it was given, which is nothing; that is acceptable for tests.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

pub(crate) fn ops_routes(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(render_metrics));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn readyz(health: web::Data<Arc<Health>>) -> HttpResponse {
    let report = health.report().await;
    let body = serde_json::json!({
        "status": if report.ready { "ready" } else { "not_ready" },
        "checks": report.checks,
    });
    if report.ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn render_metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics_handle().render())
}
