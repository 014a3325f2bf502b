//! What every service binary shares.
//!
//! - [`service`]: the service skeleton — a service declares itself once and [`service::start`]
//!   brings it up in the same order as every other; [`service::main`] is a binary's `main`.
//! - [`health`]: readiness that tells the truth (consumers, relay, tasks, database).
//! - [`in_flight`]: tasks started in order, a few at once, taken back in order (the pulls'
//!   page writes).
//! - [`http`]: `/healthz`, `/readyz`, `/metrics` and a service's own routes.
//! - [`retention`]: pruning the tables every service shares.
//! - [`grpc`]: serving a service's gRPC API together with the standard health service
//!   (`grpc.health.v1`, for Kubernetes probes and `grpc_health_probe`) and server reflection
//!   (so `grpcurl` works without .proto files), continuing callers' traces.
//! - [`shutdown_on_signal`]: a cancellation token cancelled by SIGINT or SIGTERM; every task of
//!   a service watches it and stops cleanly (consumers commit, relays drain, servers finish
//!   in-flight requests).
//! - The **allocator**: every binary that links this crate (the services, their tests and
//!   benchmarks) allocates through mimalloc. A pull parses and derives thousands of JSON
//!   objects a second; under glibc's allocator, `malloc`/`free` were half of qbo-sync's own
//!   CPU time in `make bench-qbo-sync` (`perf`, docs/benchmarks.md).

pub mod grpc;
pub mod health;
pub mod http;
pub mod in_flight;
pub mod retention;
pub mod service;
pub mod statistics;

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex},
};

use futures::FutureExt as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use service::{Context, Declaration, Running, Service};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The tasks of a started service and the token that stops them. A task that ends (or
/// panics) before shutdown is logged at ERROR and recorded, and the service's health turns
/// NOT_SERVING.
#[derive(Debug)]
pub struct ServiceTasks {
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    died: Arc<Mutex<Vec<&'static str>>>,
}

impl ServiceTasks {
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            shutdown,
            tasks: JoinSet::new(),
            died: Arc::default(),
        }
    }

    /// Runs `task`, watching that it lives as long as the service.
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let shutdown = self.shutdown.clone();
        let died = self.died.clone();
        self.tasks.spawn(async move {
            let panicked = AssertUnwindSafe(task).catch_unwind().await.is_err();
            if !shutdown.is_cancelled() {
                tracing::error!(
                    task = name,
                    panicked,
                    "a service task ended before shutdown"
                );
                if let Ok(mut died) = died.lock() {
                    died.push(name);
                }
            }
        });
    }

    /// Runs a helper task whose end means nothing (e.g. one that waits for shutdown).
    pub fn spawn_quiet(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// The names of tasks that ended before shutdown.
    pub fn died(&self) -> Arc<Mutex<Vec<&'static str>>> {
        self.died.clone()
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
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
