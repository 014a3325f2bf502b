//! Trace context in gRPC metadata.
//!
//! Clients attach [`inject_interceptor`] so each call carries the caller's `traceparent`;
//! servers build their request span with [`server_span`] (through tonic's `trace_fn`), which
//! continues the caller's trace.

use tonic::{Request, Status, metadata::MetadataKey};

/// A client interceptor that puts the current span's trace context into the call's metadata.
#[allow(clippy::result_large_err)]
pub fn inject_interceptor(mut request: Request<()>) -> Result<Request<()>, Status> {
    for (key, value) in crate::inject(&tracing::Span::current()) {
        if let (Ok(key), Ok(value)) = (MetadataKey::from_bytes(key.as_bytes()), value.parse()) {
            request.metadata_mut().insert(key, value);
        }
    }
    Ok(request)
}

/// The span of one incoming gRPC call, continuing the caller's trace when it sent one.
pub fn server_span<B>(request: &tonic::codegen::http::Request<B>) -> tracing::Span {
    let span = tracing::info_span!("grpc", path = %request.uri().path());
    let headers: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
        .collect();
    crate::set_parent(&span, headers);
    span
}
