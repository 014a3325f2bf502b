//! **qbo-sync**: QBO → local attributes (design: `docs/architecture.md`).
//!
//! Not built yet: this binary starts, serves gRPC health (`SERVING`) and reflection, so the
//! local stack, probes and tooling treat it like every other service. Its API
//! (`attrsync.v1.QboSyncService`), tables and consumers arrive with the QBO sync issue.

pub mod config;

use std::net::SocketAddr;

use attrsync_runtime::grpc::GrpcRoutes;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use crate::config::Config;

/// Serves health and reflection until `shutdown`; returns the bound address and the tasks.
pub async fn start(
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, JoinSet<()>)> {
    let mut tasks = JoinSet::new();
    let addr = GrpcRoutes::new()?
        .spawn(config.grpc.addr()?, &mut tasks, shutdown)
        .await?;
    tracing::info!(grpc_addr = %addr, "qbo-sync started (health only)");
    Ok((addr, tasks))
}
