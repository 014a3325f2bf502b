//! **import-to-fyle** (design: `docs/architecture.md`).
//!
//! Not built yet beyond the platform: it starts through the skeleton like every other service
//! — its schema with the platform tables, its workspace projection, health, readiness,
//! metrics and retention — so the local stack, probes and tooling treat it like the others.
//! Its API (`attrsync.v1.ImportToFyleService`), tables and consumers arrive with the import issue.

pub mod config;
pub mod modules;

use attrsync_runtime::{Context, Declaration, Running, Service};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use tokio_util::sync::CancellationToken;

pub use crate::config::Config;

/// import-to-fyle's own migrations (none yet; the platform tables are applied to its schema).
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
        Declaration::new(context)
    }
}

/// Starts import-to-fyle (what the binary and the tests run).
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    attrsync_runtime::service::start::<ImportToFyle>(config, shutdown).await
}
