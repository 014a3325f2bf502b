//! **qbo-sync**: QuickBooks Online → local destination attributes.
//!
//! Owns `destination_attributes` (keyed by workspace × QBO entity × QBO id × type), the realms'
//! rotating credentials (`qbo_credentials`), per-entity sync state and counts, merges, and the
//! QBO webhook changes waiting for their fetch. Read in this order:
//! - [`rules`]: pure — what a QBO entity means as attributes, change kinds, coalescing, limits;
//! - [`store`] and [`apply`]: the one write path (set-based upsert, deactivation, events);
//! - [`changes`]: the `qbo.entity-changes.v1` consumer, which only records changes;
//! - [`fetch`]: targeted fetches — a realm's recorded changes read back with one query per
//!   entity type and applied to every workspace sharing the realm;
//! - [`pull`]: full and incremental (CDC / `LastUpdatedTime`) passes, `SyncDimensions`;
//! - [`connection`]: `ConnectQbo`, rotating refresh tokens stored sealed with
//!   compare-and-swap, the expired state;
//! - [`auto_create`]: QBO employees and vendors created (or linked) for Fyle employees and
//!   merchants when the import settings ask for it — recorded by the
//!   `sync.expense-attributes.v1` consumer, created by the `qbo-auto-create` task, and
//!   `CreateEntity`;
//! - [`reconcile`]: the scheduled rounds — entities on webhooks reconciled and judged for
//!   missed webhooks (webhook health, shared with fyle-sync through
//!   [`attrsync_kafka::webhook_health`]), the others under the 24-hour rule;
//! - `rules_watch`: a settings change that alters which accounts and items are stored (chart
//!   of accounts, `import_items`, naming) re-pulls them at once.
//!
//! Start-up, the workspace projection, idempotence, health and retention come from the platform
//! skeleton ([`attrsync_runtime::service`]).

pub mod apply;
pub mod auto_create;
pub mod changes;
pub mod config;
mod connection;
pub mod fetch;
mod grpc;
pub mod pull;
pub mod realm;
pub mod reconcile;
pub mod rules;
mod rules_watch;
mod schema;
pub mod settings;
pub mod store;

use attrsync_kafka::topics;
use attrsync_proto::v1::qbo_sync_service_server::QboSyncServiceServer;
use attrsync_runtime::{Context, Declaration, Running, Service};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use tokio_util::sync::CancellationToken;

pub use crate::config::Config;

/// qbo-sync's own migrations (the platform tables are applied before them).
pub static MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/qbo-sync");

/// The qbo-sync service, as the platform starts it.
#[derive(Debug)]
pub struct QboSync;

impl Service for QboSync {
    const NAME: &'static str = "qbo-sync";
    type Config = Config;

    fn migrations() -> &'static EmbeddedMigrations {
        &MIGRATIONS
    }

    async fn declare(context: &Context<Config>) -> anyhow::Result<Declaration> {
        let config = &context.config;
        let access = connection::QboAccess::new(
            context.pool.clone(),
            config.secrets.keyring()?,
            &config.qbo,
            context.directory.clone(),
            attrsync_kafka::connection_status::Announcer::new(
                "qbo",
                Self::NAME,
                config.kafka.clone(),
                context.relay.clone(),
            ),
        )?;
        let puller = pull::Puller::new(
            access.clone(),
            context.pool.clone(),
            config.kafka.clone(),
            context.relay.clone(),
            config.pulls.clone(),
            rules::SizeLimit {
                max_active: config.size_limit.max_active,
                applies_to_workspaces_created_after: config.size_limit.applies_after,
            },
        );
        let fetcher = fetch::Fetcher::new(
            context.pool.clone(),
            access.clone(),
            context.directory.clone(),
            config.kafka.clone(),
            context.relay.clone(),
            config.webhooks.clone(),
        );
        let creator = auto_create::Creator::new(
            context.pool.clone(),
            access.clone(),
            context.directory.clone(),
            config.kafka.clone(),
            context.relay.clone(),
            config.webhooks.clone(),
        );
        let scheduler = reconcile::Scheduler {
            pool: context.pool.clone(),
            puller: puller.clone(),
            directory: context.directory.clone(),
            config: config.reconcile.clone(),
            min_interval: config.pulls.min_interval,
            lease_ttl: config.pulls.lease_ttl,
            recorder: attrsync_kafka::webhook_health::HealthRecorder::new(
                reconcile::SOURCE,
                config.kafka.clone(),
                &config.reconcile,
            ),
            relay: context.relay.clone(),
            holder: format!("qbo-round-{}", ulid::Ulid::new()),
        };
        let watch = rules_watch::RulesWatch {
            pool: context.pool.clone(),
            puller: puller.clone(),
            tick: config.rules_watch.tick,
        };
        let api = grpc::QboSyncApi {
            pool: context.pool.clone(),
            access,
            puller,
            directory: context.directory.clone(),
            creator: creator.clone(),
            reconcile: config.reconcile.clone(),
        };
        let shutdown = context.shutdown.clone();
        let creator_shutdown = context.shutdown.clone();
        Ok(Declaration::new(context)?
            .consume(topics::QBO_ENTITY_CHANGES, changes::EntityChanges)
            .consume(topics::EXPENSE_ATTRIBUTES_CHANGED, auto_create::FyleValues)
            .produces(topics::DESTINATION_ATTRIBUTES_CHANGED)
            .produces(topics::FYLE_ATTRIBUTE_AUTO_CREATED)
            .produces(topics::WEBHOOK_HEALTH)
            .produces(topics::CONNECTION_STATUS)
            .grpc(QboSyncServiceServer::new(api))
            .task("qbo-fetch", async move {
                if let Err(e) = fetcher.run(shutdown).await {
                    tracing::error!(error = %e, "QBO fetch task ended");
                }
            })
            .task("qbo-auto-create", creator.run(creator_shutdown))
            .task("qbo-reconcile", scheduler.run(context.shutdown.clone()))
            .task("qbo-rules-watch", watch.run(context.shutdown.clone())))
    }
}

/// Starts qbo-sync (what the binary and the tests run).
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    attrsync_runtime::service::start::<QboSync>(config, shutdown).await
}
