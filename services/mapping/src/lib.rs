//! **mapping**: the workspace registry and configuration owner.
//!
//! It owns `workspaces` and `workspace_settings` (every setting the sync acts on, with the
//! incumbent's defaults, plus the webhook rollout flags) and serves them over gRPC
//! (`attrsync.v1.MappingService`). Every change is committed together with a full snapshot of
//! the workspace in the outbox; the relay publishes it to the compacted
//! `settings.workspaces.v1`, from which ingest, fyle-sync and the other services keep their
//! own projections. Settings therefore reach every service at once — no per-pod caches.
//!
//! Failure policy: with the database down, gRPC calls fail `UNAVAILABLE` and nothing changes;
//! with Kafka down, changes still commit and their snapshots wait in the outbox.

pub mod config;
mod grpc;
mod schema;
mod snapshot;
pub mod store;

use std::net::SocketAddr;

use attrsync_kafka::{Producer, relay, topics};
use attrsync_proto::v1::mapping_service_server::MappingServiceServer;
use attrsync_runtime::{ServiceTasks, grpc::GrpcRoutes};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use crate::config::Config;

/// mapping's migrations, applied into its own schema.
pub static MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/mapping");
/// mapping's default schema name.
pub const SCHEMA: &str = "mapping";

/// A started mapping service.
#[derive(Debug)]
pub struct Running {
    pub grpc_addr: SocketAddr,
    tasks: ServiceTasks,
}

impl Running {
    /// Stops every task and waits for them.
    pub async fn stop(self) {
        self.tasks.stop().await;
    }
}

/// Applies pending migrations to the service's schema (also what `--migrate-only` does).
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    attrsync_db::migrate(&config.database.url, &config.database.schema, &MIGRATIONS).await?;
    Ok(())
}

pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    migrate(&config).await?;
    let pool = attrsync_db::connect(&config.database).await?;
    topics::ensure(&config.kafka, &[topics::WORKSPACE_SETTINGS], &[]).await?;
    let producer = Producer::new(&config.kafka)?;
    let relay_handle = relay::RelayHandle::default();

    let store = store::Store::new(pool.clone(), config.kafka.topic(topics::WORKSPACE_SETTINGS));
    let api = grpc::MappingApi {
        store,
        relay: relay_handle.clone(),
    };
    let mut tasks = JoinSet::new();
    let routes = GrpcRoutes::new()?;
    routes
        .health
        .set_serving::<MappingServiceServer<grpc::MappingApi>>()
        .await;
    let grpc_addr = routes
        .with_service(MappingServiceServer::new(api))
        .spawn(config.grpc.addr()?, &mut tasks, shutdown.clone())
        .await?;
    relay::spawn(
        &mut tasks,
        pool,
        producer,
        &config.database.schema,
        relay_handle,
        shutdown.clone(),
    );
    tracing::info!(%grpc_addr, "mapping started");
    Ok(Running {
        grpc_addr,
        tasks: ServiceTasks::new(shutdown, tasks),
    })
}
