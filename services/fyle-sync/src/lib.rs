//! **fyle-sync**: Fyle → local attributes.
//!
//! Owns `expense_attributes` (keyed by source id), `fyle_sync_state`, `processed_events`, the
//! webhook counters and its projection of the workspace registry. It applies attribute
//! webhooks relayed by ingest (`fyle.attribute-webhooks.v1`, see [`apply`]), serves the stored
//! attributes over gRPC, and publishes what changed to `sync.expense-attributes.v1` through its
//! outbox. Pulls, reconciliation and webhook-health tracking arrive with the polling issue; the
//! tables for them are already here.

pub mod apply;
pub mod config;
mod grpc;
pub mod plan;
mod schema;

use std::{net::SocketAddr, sync::Arc};

use attrsync_kafka::{
    ConsumerProgress, Producer,
    consumer::{self, ConsumerSpec},
    relay, topics, workspaces,
};
use attrsync_proto::v1::fyle_sync_service_server::FyleSyncServiceServer;
use attrsync_runtime::{ServiceTasks, grpc::GrpcRoutes};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use crate::config::Config;

/// fyle-sync's migrations, applied into its own schema.
pub static MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/fyle-sync");
/// fyle-sync's default schema name.
pub const SCHEMA: &str = "fyle_sync";

/// A started fyle-sync.
#[derive(Debug)]
pub struct Running {
    pub grpc_addr: SocketAddr,
    /// Progress of the attribute-webhook consumer.
    pub webhooks: Arc<ConsumerProgress>,
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
    let consumed = [topics::FYLE_ATTRIBUTE_WEBHOOKS, topics::WORKSPACE_SETTINGS];
    topics::ensure(
        &config.kafka,
        &[
            topics::FYLE_ATTRIBUTE_WEBHOOKS,
            topics::WORKSPACE_SETTINGS,
            topics::EXPENSE_ATTRIBUTES_CHANGED,
        ],
        &consumed,
    )
    .await?;
    let producer = Producer::new(&config.kafka)?;
    let relay_handle = relay::RelayHandle::default();

    let mut tasks = JoinSet::new();
    let routes = GrpcRoutes::new()?;
    routes
        .health
        .set_serving::<FyleSyncServiceServer<grpc::FyleSyncApi>>()
        .await;
    let grpc_addr = routes
        .with_service(FyleSyncServiceServer::new(grpc::FyleSyncApi {
            pool: pool.clone(),
        }))
        .spawn(config.grpc.addr()?, &mut tasks, shutdown.clone())
        .await?;

    let webhooks = Arc::new(ConsumerProgress::default());
    let handler = Arc::new(apply::AttributeWebhookHandler {
        pool: pool.clone(),
        changes_topic: config.kafka.topic(topics::EXPENSE_ATTRIBUTES_CHANGED),
        relay: relay_handle.clone(),
    });
    let spec = ConsumerSpec {
        topics: vec![topics::FYLE_ATTRIBUTE_WEBHOOKS],
        group_suffix: None,
    };
    consumer::spawn(
        &mut tasks,
        &config.kafka,
        spec,
        handler,
        producer.clone(),
        webhooks.clone(),
        shutdown.clone(),
    );
    workspaces::spawn_projection(
        &mut tasks,
        &config.kafka,
        pool.clone(),
        producer.clone(),
        shutdown.clone(),
    );

    relay::spawn(
        &mut tasks,
        pool,
        producer,
        &config.database.schema,
        relay_handle,
        shutdown.clone(),
    );
    tracing::info!(%grpc_addr, "fyle-sync started");
    Ok(Running {
        grpc_addr,
        webhooks,
        tasks: ServiceTasks::new(shutdown, tasks),
    })
}
