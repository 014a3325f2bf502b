//! gRPC serving with health and reflection.

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{service::Routes, transport::Server};
use tonic_health::server::HealthReporter;

#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A service's routes plus the health reporter its components update.
#[derive(Debug)]
pub struct GrpcRoutes {
    routes: Routes,
    pub health: HealthReporter,
}

impl GrpcRoutes {
    /// Health and reflection, ready for the service's own API to be added.
    pub fn new() -> Result<Self, GrpcError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(attrsync_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(attrsync_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;
        let routes = Routes::new(health_service)
            .add_service(reflection)
            .add_service(reflection_alpha);
        Ok(Self { routes, health })
    }

    /// Adds a service's API.
    pub fn with_service<S>(mut self, service: S) -> Self
    where
        S: tonic::codegen::Service<
                tonic::codegen::http::Request<tonic::body::Body>,
                Response = tonic::codegen::http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.routes = self.routes.add_service(service);
        self
    }

    /// Binds `addr` and serves on a task of `tasks` until `shutdown`; returns the bound address
    /// (useful with port 0).
    pub async fn spawn(
        self,
        addr: std::net::SocketAddr,
        tasks: &mut tokio::task::JoinSet<()>,
        shutdown: CancellationToken,
    ) -> std::io::Result<std::net::SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        tasks.spawn(async move {
            if let Err(e) = self.serve(listener, shutdown).await {
                tracing::error!(error = %e, "gRPC server stopped");
            }
        });
        Ok(bound)
    }

    /// Serves until `shutdown` is cancelled, then finishes in-flight calls.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), GrpcError> {
        Server::builder()
            .trace_fn(attrsync_telemetry::grpc::server_span)
            .add_routes(self.routes)
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(listener),
                shutdown.cancelled_owned(),
            )
            .await?;
        Ok(())
    }
}
