//! Logs and traces for every service.
//!
//! [`init`] installs a `tracing` subscriber that writes JSON (or human) logs and always carries
//! OpenTelemetry span context, so trace ids exist and propagate even when nothing exports them;
//! spans are exported over OTLP/gRPC only when an endpoint is configured.
//!
//! Trace context crosses process boundaries in W3C `traceparent`/`tracestate` form:
//! [`inject`]/[`extract`] work on plain string maps (Kafka headers and the envelope's
//! `trace_context`), and [`grpc`] carries it in gRPC metadata. An incoming context that is
//! missing or malformed is ignored (the span starts a new trace): tracing never fails a request.

pub mod grpc;

use std::collections::HashMap;

use attrsync_config::{LogFormat, TelemetryConfig};
use opentelemetry::{
    global,
    propagation::{Extractor, Injector},
    trace::TracerProvider as _,
};
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer as _, filter::LevelFilter, layer::SubscriberExt, util::SubscriberInitExt,
};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP exporter: {0}")]
    Exporter(String),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Keeps the tracer provider alive; flushes spans when dropped.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

/// Installs logging and tracing for `service`. Call once, early in `main`.
pub fn init(
    service: &'static str,
    config: &TelemetryConfig,
) -> Result<TelemetryGuard, TelemetryError> {
    global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = tracer_provider(service, config.otlp_endpoint.as_deref())?;
    global::set_tracer_provider(provider.clone());
    // Spans at INFO and above always reach OpenTelemetry, whatever the log filter says, so
    // trace context propagates even when logs are quiet.
    let otel_layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(service))
        .with_filter(LevelFilter::INFO);
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log_filter));
    let registry = tracing_subscriber::registry().with(otel_layer);
    let installed = match config.log_format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .compact()
                    .with_filter(filter),
            )
            .try_init(),
    };
    installed.map_err(|_| TelemetryError::AlreadyInstalled)?;
    Ok(TelemetryGuard { provider })
}

/// Installs tracing for tests (quiet logs, context propagation on); repeat calls are no-ops.
pub fn init_for_tests() {
    global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = SdkTracerProvider::builder().build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("test"))
        .with_filter(LevelFilter::INFO);
    global::set_tracer_provider(provider);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::registry()
        .with(layer)
        .with(
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .compact()
                .with_filter(filter),
        )
        .try_init();
}

fn tracer_provider(
    service: &'static str,
    endpoint: Option<&str>,
) -> Result<SdkTracerProvider, TelemetryError> {
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let Some(endpoint) = endpoint else {
        return Ok(builder.build());
    };
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    Ok(builder.with_batch_exporter(exporter).build())
}

/// The W3C trace context of `span`, as `traceparent` (and `tracestate`) entries.
pub fn inject(span: &tracing::Span) -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    let context = span.context();
    global::get_text_map_propagator(|p| p.inject_context(&context, &mut MapInjector(&mut carrier)));
    carrier
}

/// Makes `span` a child of the trace described by `carrier` (if it describes one).
pub fn set_parent<'a>(span: &tracing::Span, carrier: impl IntoIterator<Item = (&'a str, &'a str)>) {
    let pairs: Vec<(&str, &str)> = carrier.into_iter().collect();
    let context = global::get_text_map_propagator(|p| p.extract(&PairExtractor(&pairs)));
    let _ = span.set_parent(context);
}

/// The trace id of `span` in hex, if it belongs to a trace (for logs and tests).
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    let context = span.context();
    let span_ref = context.span();
    let sc = span_ref.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

struct MapInjector<'a>(&'a mut HashMap<String, String>);

impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct PairExtractor<'a>(&'a [(&'a str, &'a str)]);

impl Extractor for PairExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| *v)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| *k).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_survives_an_inject_extract_round_trip() {
        init_for_tests();
        let producer = tracing::info_span!("produce");
        let carrier = inject(&producer);
        let traceparent = carrier.get("traceparent").expect("traceparent injected");
        let producer_trace = trace_id(&producer).expect("producer has a trace");
        assert!(
            traceparent.contains(&producer_trace),
            "{traceparent} vs {producer_trace}"
        );

        let consumer = tracing::info_span!("consume");
        set_parent(
            &consumer,
            carrier.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        assert_eq!(trace_id(&consumer), Some(producer_trace));
    }

    #[test]
    fn a_malformed_context_starts_a_new_trace() {
        init_for_tests();
        let span = tracing::info_span!("consume");
        set_parent(&span, [("traceparent", "garbage")]);
        let id = trace_id(&span).expect("a fresh trace");
        assert_ne!(id, "00000000000000000000000000000000");
    }
}
