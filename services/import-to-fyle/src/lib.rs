//! **import-to-fyle**: QBO values → Fyle, within seconds of a QBO change (design:
//! `docs/architecture.md`, "import-to-fyle").
//!
//! Owns `import_destination_attributes` (its copy of the QBO values, from
//! `sync.destination-attributes.v1`), `import_requests` (imports waiting for a run) and
//! `import_logs` (the incumbent's ImportLog), `import_disables` and `import_schedules`. Read
//! in this order:
//! - [`modules`]: pure — per source field, the exact Fyle payloads from the settings, the QBO
//!   values and what Fyle has;
//! - [`consumers`]: `sync.destination-attributes.v1` and `imports.commands.v1`, which only
//!   record values and requests;
//! - [`requests`]: the runner task — a burst of changes coalesced into one run per workspace ×
//!   source field, retries with backoff;
//! - [`run`]: one run under a lease — the 30-minute rule, incremental selection, batches,
//!   the import log, `ImportCompleted`;
//! - [`schedule`]: the 24-hour import schedule (#61), one per workspace that imports;
//! - [`fyle`]: Fyle through fyle-sync's access tokens and the shared rate bucket;
//! - `grpc`: `TriggerImport`, `ListImportLogs`, `GetImportSchedule`.

pub mod config;
pub mod consumers;
pub mod fyle;
mod grpc;
pub mod modules;
pub mod requests;
pub mod run;
pub mod schedule;
mod schema;
pub mod settings;
pub mod store;

use std::sync::Arc;

use attrsync_db::shared_rate::SharedLimiter;
use attrsync_kafka::topics;
use attrsync_proto::v1::import_to_fyle_service_server::ImportToFyleServiceServer;
use attrsync_runtime::{Context, Declaration, Running, Service};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use tokio_util::sync::CancellationToken;

pub use crate::config::Config;

/// import-to-fyle's own migrations (the platform tables are applied before them).
pub static MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/import-to-fyle");

/// The import-to-fyle service, as the platform starts it.
#[derive(Debug)]
pub struct ImportToFyle;

impl Service for ImportToFyle {
    const NAME: &'static str = "import-to-fyle";
    type Config = Config;

    fn migrations() -> &'static EmbeddedMigrations {
        &MIGRATIONS
    }

    async fn declare(context: &Context<Config>) -> anyhow::Result<Declaration> {
        let config = &context.config;
        // Burst 1: requests evenly spaced, as Fyle counts a sliding second.
        let limiter = Arc::new(SharedLimiter::new(
            context.pool.clone(),
            "fyle",
            config.fyle.requests_per_second,
            1.0,
        ));
        let fyle = fyle::FyleGateway::new(
            &config.fyle_sync.endpoint,
            limiter,
            config.fyle.request_timeout,
            config.fyle.max_attempts,
        )?;
        let runner = run::Runner::new(
            context.pool.clone(),
            fyle,
            context.directory.clone(),
            config.kafka.clone(),
            context.relay.clone(),
            config.runs.clone(),
        );
        let api = grpc::ImportApi {
            runner: runner.clone(),
            schedule_interval: config.schedule.interval,
        };
        Ok(Declaration::new(context)?
            .consume(
                topics::DESTINATION_ATTRIBUTES_CHANGED,
                consumers::DestinationChanges,
            )
            .consume(topics::IMPORT_COMMANDS, consumers::ImportCommands)
            .produces(topics::IMPORT_EVENTS)
            .grpc(ImportToFyleServiceServer::new(api))
            .task(
                "import-runner",
                requests::serve(runner, context.shutdown.clone()),
            )
            .task(
                "import-schedule",
                schedule::serve(
                    context.pool.clone(),
                    config.schedule.interval,
                    config.schedule.scan,
                    context.shutdown.clone(),
                ),
            ))
    }
}

/// Starts import-to-fyle (what the binary and the tests run).
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    attrsync_runtime::service::start::<ImportToFyle>(config, shutdown).await
}
