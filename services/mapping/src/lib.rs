//! **mapping**: the workspace registry and configuration owner.
//!
//! It owns `workspaces` and `workspace_settings` (every setting the sync acts on, with the
//! incumbent's defaults, plus the webhook rollout flags) and serves them over gRPC
//! (`attrsync.v1.MappingService`). Every change is committed together with a full snapshot of
//! the workspace in the outbox; the relay publishes it to the compacted
//! `settings.workspaces.v1`, from which ingest, fyle-sync and the other services keep their
//! own projections. Settings therefore reach every service at once — no per-pod caches.
//!
//! It also keeps the workspaces' **mappings** current in real time. It projects both sides —
//! Fyle values from fyle-sync's `sync.expense-attributes.v1`, QBO values from qbo-sync's
//! `sync.destination-attributes.v1` — into its own tables ([`projection`]), and every change
//! that makes a value matchable is auto-mapped in the same transaction by pure rules
//! ([`automap`]) around thin I/O ([`mappings`]). Operators list, upsert and delete mappings,
//! and the export pipeline reports mapping errors, which resolve the moment a mapping appears
//! ([`operator`]). A Fyle value qbo-sync created a QBO entity for
//! (`sync.fyle-auto-created.v1`) is mapped to it at once (`auto_created`).
//!
//! `UpdateImportSettings` ([`import_settings`], pure; [`store`]) changes the settings and the
//! mapping settings, re-maps what the change retargets and publishes the snapshot and the
//! `ImportRequested` commands on `imports.commands.v1` in one transaction; import-to-fyle's
//! `ImportCompleted` events ([`imports`]) tell it which fields have been imported. A Fyle
//! org's ORG_SETTING webhooks (`fyle.org-settings.v1`, [`org_settings`]) are stored on its
//! workspace and published with the snapshot. The count of active corporate cards without a
//! mapping goes to Fyle's integration-settings service whenever it changes ([`unmapped_cards`]).
//!
//! Failure policy: with the database down, gRPC calls fail `UNAVAILABLE` and nothing changes;
//! with Kafka down, changes still commit and their snapshots wait in the outbox; the consumers
//! wait (their partitions paused) until the database is back.

pub mod auto_created;
pub mod automap;
pub mod config;
mod grpc;
mod import_settings;
pub mod imports;
pub mod mappings;
mod operator;
pub mod org_settings;
pub mod projection;
mod schema;
mod snapshot;
pub mod store;
pub mod unmapped_cards;

use attrsync_kafka::topics;
use attrsync_proto::v1::mapping_service_server::MappingServiceServer;
use attrsync_runtime::{Context, Declaration, Running, Service};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use tokio_util::sync::CancellationToken;

pub use crate::config::Config;

/// mapping's own migrations (the platform tables are applied before them).
pub static MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/mapping");
/// mapping's default schema name.
pub const SCHEMA: &str = "mapping";

/// The mapping service, as the platform starts it. It owns the registry, so it consumes no
/// snapshots: it writes its own `workspace_projection` rows with each registry change (and
/// backfills them at start), which is where its consumers look workspaces up.
#[derive(Debug)]
pub struct Mapping;

impl Service for Mapping {
    const NAME: &'static str = "mapping";
    type Config = Config;

    fn migrations() -> &'static EmbeddedMigrations {
        &MIGRATIONS
    }

    async fn declare(context: &Context<Config>) -> anyhow::Result<Declaration> {
        let store = store::Store::new(
            context.pool.clone(),
            context.topic(topics::WORKSPACE_SETTINGS),
            context.topic(topics::IMPORT_COMMANDS),
        );
        let backfilled = store.backfill_projection().await?;
        if backfilled > 0 {
            tracing::info!(
                backfilled,
                "workspace projection rows written from the registry"
            );
        }
        let channel =
            tonic::transport::Channel::from_shared(context.config.import_to_fyle.endpoint.clone())?
                .connect_timeout(std::time::Duration::from_secs(2))
                .timeout(context.config.import_to_fyle.timeout)
                .connect_lazy();
        let fyle_sync_channel =
            tonic::transport::Channel::from_shared(context.config.fyle_sync.endpoint.clone())?
                .connect_timeout(std::time::Duration::from_secs(2))
                .timeout(std::time::Duration::from_secs(30))
                .connect_lazy();
        let reporter = unmapped_cards::Reporter::new(
            context.pool.clone(),
            attrsync_proto::v1::fyle_sync_service_client::FyleSyncServiceClient::new(
                fyle_sync_channel,
            ),
            context.config.unmapped_cards.clone(),
        )?;
        let api = grpc::MappingApi {
            store,
            relay: context.relay.clone(),
            import_to_fyle:
                attrsync_proto::v1::import_to_fyle_service_client::ImportToFyleServiceClient::new(
                    channel,
                ),
        };
        Ok(Declaration::new(context)?
            .produces(topics::WORKSPACE_SETTINGS)
            .produces(topics::IMPORT_COMMANDS)
            .consume(
                topics::EXPENSE_ATTRIBUTES_CHANGED,
                projection::ExpenseAttributeEvents,
            )
            .consume(
                topics::DESTINATION_ATTRIBUTES_CHANGED,
                projection::DestinationAttributeEvents,
            )
            .consume(
                topics::FYLE_ATTRIBUTE_AUTO_CREATED,
                auto_created::AutoCreatedEvents,
            )
            .consume(topics::IMPORT_EVENTS, imports::ImportEvents)
            .consume(
                topics::FYLE_ORG_SETTINGS,
                org_settings::OrgSettingEvents {
                    settings_topic: context.topic(topics::WORKSPACE_SETTINGS),
                },
            )
            .grpc(MappingServiceServer::new(api))
            .task(
                "unmapped-card reports",
                reporter.run(context.shutdown.clone()),
            ))
    }
}

/// Starts mapping (what the binary and the tests run).
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    attrsync_runtime::service::start::<Mapping>(config, shutdown).await
}
