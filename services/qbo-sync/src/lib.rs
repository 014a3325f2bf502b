//! **qbo-sync**: QBO → local attributes (design: `docs/architecture.md`).
//!
//! Not built yet: this binary starts, serves gRPC health (`SERVING`) and reflection, so the
//! local stack, probes and tooling treat it like every other service. Its API
//! (`attrsync.v1.QboSyncService`), tables and consumers arrive with the QBO sync issue.

pub mod config;

use std::net::SocketAddr;

use attrsync_runtime::grpc::GrpcRoutes;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::config::Config;

/// Serves health and reflection until `shutdown`; returns the bound address and the server task.
pub async fn start(
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(config.grpc.addr()?).await?;
    let addr = listener.local_addr()?;
    let routes = GrpcRoutes::new()?;
    let task = tokio::spawn(async move {
        if let Err(e) = routes.serve(listener, shutdown).await {
            tracing::error!(error = %e, "gRPC server stopped");
        }
    });
    tracing::info!(grpc_addr = %addr, "qbo-sync started (health only)");
    Ok((addr, task))
}
