//! What every service binary shares.
//!
//! - [`shutdown_on_signal`]: a cancellation token cancelled by SIGINT or SIGTERM; every task of
//!   a service watches it and stops cleanly (consumers commit, relays drain, servers finish
//!   in-flight requests).
//! - [`grpc`]: serving a service's gRPC API together with the standard health service
//!   (`grpc.health.v1`, for Kubernetes probes and `grpc_health_probe`) and server reflection
//!   (so `grpcurl` works without .proto files), continuing callers' traces.

pub mod grpc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The tasks of a started service and the token that stops them.
#[derive(Debug)]
pub struct ServiceTasks {
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl ServiceTasks {
    pub fn new(shutdown: CancellationToken, tasks: JoinSet<()>) -> Self {
        Self { shutdown, tasks }
    }

    /// Cancels the token and waits for every task (consumers commit, relays drain).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Ends a service binary: a start-up error (bad configuration, unreachable database…) is
/// printed as one readable line, with its causes, and the process exits with status 1.
pub fn exit_code(service: &str, outcome: anyhow::Result<()>) -> std::process::ExitCode {
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{service}: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A token cancelled when the process receives SIGINT (Ctrl-C) or SIGTERM.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        trigger.cancel();
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
