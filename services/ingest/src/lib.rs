//! **ingest**: the public webhook edge.
//!
//! Receives Fyle webhooks over HTTP ([`http`]), validates them against its projection of the
//! workspace registry ([`fyle`] holds the rules and every refusal), stores each accepted
//! delivery durably and deduplicated in `inbox` together with its relay message in `outbox`
//! ([`store`]), answers, and relays to Kafka: attribute webhooks to
//! `fyle.attribute-webhooks.v1`, report/expense webhooks to `fyle.expense-webhooks.v1`,
//! org-setting updates to `fyle.org-settings.v1`. QBO webhooks arrive with the QBO issue.
//!
//! Failure policy: fail closed on bad input (clear 4xx, nothing stored), fail safe on outages:
//! database down → 503 with `Retry-After` and nothing stored; Kafka down → accepted, stored,
//! relayed when Kafka returns.

pub mod config;
pub mod fyle;
mod grpc;
pub mod http;
pub mod store;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use attrsync_kafka::{Producer, relay, topics, workspaces};
use attrsync_proto::v1::{
    ingest_service_server::IngestServiceServer, mapping_service_client::MappingServiceClient,
};
use attrsync_runtime::{ServiceTasks, grpc::GrpcRoutes};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::{service::interceptor::InterceptedService, transport::Channel};

pub use crate::config::Config;

/// ingest's migrations, applied into its own schema.
pub static MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/ingest");
/// ingest's default schema name.
pub const SCHEMA: &str = "ingest";

type Interceptor = fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>;
/// A mapping client that carries the caller's trace context.
pub(crate) type MappingClient = MappingServiceClient<InterceptedService<Channel, Interceptor>>;

/// A started ingest.
#[derive(Debug)]
pub struct Running {
    pub http_addr: SocketAddr,
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
    let produced = [
        topics::FYLE_ATTRIBUTE_WEBHOOKS,
        topics::FYLE_EXPENSE_WEBHOOKS,
        topics::FYLE_ORG_SETTINGS,
        topics::WORKSPACE_SETTINGS,
    ];
    topics::ensure(&config.kafka, &produced, &[topics::WORKSPACE_SETTINGS]).await?;
    let producer = Producer::new(&config.kafka)?;
    let relay_handle = relay::RelayHandle::default();
    let channel = Channel::from_shared(config.mapping.endpoint.clone())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    let mapping = MappingServiceClient::with_interceptor(
        channel,
        attrsync_telemetry::grpc::inject_interceptor as Interceptor,
    );

    let mut tasks = JoinSet::new();
    let state = Arc::new(http::AppState {
        pool: pool.clone(),
        kafka: config.kafka.clone(),
        limiter: http::AppState::limiter(
            config.rate_limit.per_workspace_per_second,
            config.rate_limit.burst,
        ),
        mapping,
        relay: relay_handle.clone(),
        max_body_bytes: config.http.max_body_bytes,
    });
    // Forget the buckets of workspaces that went quiet, so the limiter's memory stays small.
    let limiter_state = state.clone();
    let limiter_shutdown = shutdown.clone();
    tasks.spawn(async move {
        loop {
            tokio::select! {
                () = limiter_shutdown.cancelled() => break,
                () = tokio::time::sleep(Duration::from_secs(60)) => limiter_state.limiter.retain_recent(),
            }
        }
    });

    let http_listener = std::net::TcpListener::bind(config.http.addr()?)?;
    let http_addr = http_listener.local_addr()?;
    let app_state = actix_web::web::Data::new(state.clone());
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(app_state.clone())
            .configure(http::routes)
    })
    .workers(2)
    .disable_signals()
    .shutdown_timeout(10)
    .listen(http_listener)?
    .run();
    let server_handle = server.handle();
    tasks.spawn(async move {
        if let Err(e) = server.await {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    let http_shutdown = shutdown.clone();
    tasks.spawn(async move {
        http_shutdown.cancelled().await;
        server_handle.stop(true).await;
    });

    let routes = GrpcRoutes::new()?;
    routes
        .health
        .set_serving::<IngestServiceServer<grpc::IngestApi>>()
        .await;
    let grpc_addr = routes
        .with_service(IngestServiceServer::new(grpc::IngestApi {
            state: state.clone(),
        }))
        .spawn(config.grpc.addr()?, &mut tasks, shutdown.clone())
        .await?;

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
    tracing::info!(%http_addr, %grpc_addr, "ingest started");
    Ok(Running {
        http_addr,
        grpc_addr,
        tasks: ServiceTasks::new(shutdown, tasks),
    })
}
