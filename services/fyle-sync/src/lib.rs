//! **fyle-sync**: Fyle → local attributes.
//!
//! Owns `expense_attributes` (keyed by source id), `source_versions` (the newest version and
//! tombstone of every Fyle object), `fyle_sync_state` and the webhook counters. It applies
//! attribute webhooks relayed by ingest (`fyle.attribute-webhooks.v1`, see [`apply`]), serves
//! the stored attributes over gRPC, and publishes what changed to `sync.expense-attributes.v1`
//! through its outbox. Start-up, the workspace projection, idempotence, health and retention
//! come from the platform skeleton ([`attrsync_runtime::service`]). Its Fyle connection
//! (`ConnectFyle`, `GetAccessToken`, sealed refresh tokens, the broken state) is [`connection`];
//! full and incremental pulls (`SyncDimensions`), applied through the same derivation and
//! version rule as webhooks, are [`pull`]; the workspace's Fyle webhook subscription, registered
//! by `ConnectFyle` with ingest's URL, is [`subscription`]. A scheduler task ([`schedule`])
//! runs the safety net: workspaces in webhook mode get a cheap incremental reconcile on an
//! interval, the others keep the 24-hour rule of full pulls; every change a reconcile had to
//! apply is a missed webhook, and past a threshold the workspace's webhook health
//! ([`attrsync_core::webhook_health`]) turns DEGRADED — polling takes over at a shorter
//! interval, a metric and a `WebhookHealthChanged` event (`sync.webhook-health.v1`) say so —
//! until enough clean windows pass.

pub mod apply;
pub mod config;
mod connection;
mod grpc;
pub mod plan;
pub mod pull;
pub mod schedule;
mod schema;
pub mod subscription;

use attrsync_kafka::topics;
use attrsync_proto::v1::fyle_sync_service_server::FyleSyncServiceServer;
use attrsync_runtime::{Context, Declaration, Running, Service};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use tokio_util::sync::CancellationToken;

pub use crate::config::Config;

/// fyle-sync's own migrations (the platform tables are applied before them).
pub static MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/fyle-sync");
/// fyle-sync's default schema name.
pub const SCHEMA: &str = "fyle_sync";

/// The fyle-sync service, as the platform starts it.
#[derive(Debug)]
pub struct FyleSync;

impl Service for FyleSync {
    const NAME: &'static str = "fyle-sync";
    type Config = Config;

    fn migrations() -> &'static EmbeddedMigrations {
        &MIGRATIONS
    }

    async fn declare(context: &Context<Config>) -> anyhow::Result<Declaration> {
        let webhooks = apply::AttributeWebhooks {
            max_clock_skew: context.config.versions.max_clock_skew,
        };
        let fyle = connection::FyleAccess::new(
            context.pool.clone(),
            context.config.secrets.keyring()?,
            context.config.fyle.clone(),
            context.directory.clone(),
            attrsync_kafka::connection_status::Announcer::new(
                "fyle",
                Self::NAME,
                context.config.kafka.clone(),
                context.relay.clone(),
            ),
        )?;
        let puller = pull::Puller::new(
            fyle.clone(),
            context.config.kafka.clone(),
            context.relay.clone(),
            context.config.pulls.clone(),
            context.config.versions.max_clock_skew,
        );
        let subscriptions = subscription::Subscriptions::new(
            fyle.clone(),
            &context.config.ingest.endpoint,
            context.config.subscriptions.retry_interval,
            context.config.pulls.lease_ttl,
        )?;
        let scheduler = schedule::Scheduler {
            pool: context.pool.clone(),
            puller: puller.clone(),
            subscriptions: subscriptions.clone(),
            directory: context.directory.clone(),
            config: context.config.reconcile.clone(),
            min_interval: context.config.pulls.min_interval,
            lease_ttl: context.config.pulls.lease_ttl,
            recorder: attrsync_kafka::webhook_health::HealthRecorder::new(
                schedule::SOURCE,
                context.config.kafka.clone(),
                &context.config.reconcile,
            ),
            relay: context.relay.clone(),
            holder: format!("fyle-sync-{}", ulid::Ulid::new()),
        };
        let api = grpc::FyleSyncApi {
            pool: context.pool.clone(),
            fyle,
            puller,
            subscriptions,
            directory: context.directory.clone(),
            reconcile: context.config.reconcile.clone(),
        };
        Ok(Declaration::new(context)?
            .consume(topics::FYLE_ATTRIBUTE_WEBHOOKS, webhooks)
            .produces(topics::EXPENSE_ATTRIBUTES_CHANGED)
            .produces(topics::WEBHOOK_HEALTH)
            .produces(topics::CONNECTION_STATUS)
            .grpc(FyleSyncServiceServer::new(api))
            .task(
                "scheduled reconciles",
                scheduler.run(context.shutdown.clone()),
            ))
    }
}

/// Starts fyle-sync (what the binary and the tests run).
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    attrsync_runtime::service::start::<FyleSync>(config, shutdown).await
}
