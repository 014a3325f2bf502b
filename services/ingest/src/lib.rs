//! **ingest**: the public webhook edge.
//!
//! Receives Fyle webhooks over HTTP ([`http`]), validates them against its projection of the
//! workspace registry ([`fyle`] holds the rules and every refusal), stores each accepted
//! delivery durably and deduplicated in `inbox` together with its relay message in `outbox`
//! ([`store`]), answers, and relays to Kafka: attribute webhooks to
//! `fyle.attribute-webhooks.v1`, report/expense webhooks to `fyle.expense-webhooks.v1`,
//! org-setting updates to `fyle.org-settings.v1`. QBO webhooks ([`qbo_edge`], rules in
//! [`qbo`]) go to `qbo.entity-changes.v1`, one message per entity per workspace of the realm.
//! Start-up, the projection, health, metrics and the platform tables' retention come from the
//! skeleton ([`attrsync_runtime::service`]); ingest adds its HTTP routes, its gRPC API and three
//! tasks (the inbox's group commit, the rate limiter's pruning and the inbox's retention).
//!
//! Failure policy: fail closed on bad input (clear 4xx, nothing stored), fail safe on outages:
//! database down or silent → 503 with `Retry-After` and nothing stored; Kafka down → accepted,
//! stored, relayed when Kafka returns.

pub mod auth;
pub mod config;
pub mod credentials;
pub mod fyle;
mod grpc;
pub mod guard;
pub mod http;
pub mod qbo;
pub mod qbo_edge;
pub mod store;

use std::{sync::Arc, time::Duration};

use attrsync_kafka::{topics, workspaces};
use attrsync_proto::v1::ingest_service_server::IngestServiceServer;
use attrsync_runtime::{Context, Declaration, Running, Service, retention};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use tokio_util::sync::CancellationToken;

pub use crate::config::Config;

/// ingest's own migrations (the platform tables are applied before them).
pub static MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/ingest");
/// ingest's default schema name.
pub const SCHEMA: &str = "ingest";

/// The ingest service, as the platform starts it.
#[derive(Debug)]
pub struct Ingest;

impl Service for Ingest {
    const NAME: &'static str = "ingest";
    type Config = Config;

    fn migrations() -> &'static EmbeddedMigrations {
        &MIGRATIONS
    }

    async fn declare(context: &Context<Config>) -> anyhow::Result<Declaration> {
        let config = &context.config;
        let (inbox, inbox_writers) = store::Inbox::start(
            context.pool.clone(),
            store::GroupCommit {
                writers: config.inbox.writers,
                max_batch: config.inbox.max_batch,
                statement_timeout: config.database.query_timeout,
            },
            context.shutdown.clone(),
        );
        let state = Arc::new(http::AppState {
            pool: context.pool.clone(),
            inbox,
            kafka: config.kafka.clone(),
            limiter: http::AppState::limiter(
                config.rate_limit.per_workspace_per_second,
                config.rate_limit.burst,
            ),
            directory: context.directory.clone(),
            mapping: workspaces::mapping_client(&config.mapping.endpoint)?,
            relay: context.relay.clone(),
            max_body_bytes: config.http.max_body_bytes,
            query_timeout: config.database.query_timeout,
            keyring: config.secrets.keyring()?,
            default_mode: config.webhooks.default_mode()?,
            signature_tolerance: config.webhooks.signature_tolerance,
            public_url: config.webhooks.public_url.trim_end_matches('/').to_owned(),
            qbo_verifier_tokens: config.qbo.verifier_tokens.clone(),
            guard: guard::Guard::new(&config.limits),
            auth_cache: Arc::new(guard::AuthCache::new(config.limits.auth_cache_ttl)),
        });
        let routes_state = actix_web::web::Data::new(state.clone());
        Ok(Declaration::new(context)?
            .produces(topics::FYLE_ATTRIBUTE_WEBHOOKS)
            .produces(topics::FYLE_EXPENSE_WEBHOOKS)
            .produces(topics::FYLE_ORG_SETTINGS)
            .produces(topics::QBO_ENTITY_CHANGES)
            .http(move |routes| {
                routes.app_data(routes_state.clone());
                http::routes(routes);
                qbo_edge::routes(routes);
            })
            .grpc(IngestServiceServer::new(grpc::IngestApi {
                state: state.clone(),
                secret_overlap: config.webhooks.secret_overlap,
            }))
            .task("inbox group commit", inbox_writers)
            .task(
                "credentials refresh",
                refresh_credentials(state.clone(), context.shutdown.clone()),
            )
            .task(
                "rate-limit pruning",
                prune_limiter(state, context.shutdown.clone()),
            )
            .task(
                "inbox retention",
                prune_inbox(
                    context.pool.clone(),
                    config.clone(),
                    context.shutdown.clone(),
                ),
            ))
    }
}

/// Keeps active workspaces' credentials loaded ([`guard::AuthCache::refresh`]): one pass every
/// quarter of the cache's TTL.
async fn refresh_credentials(state: Arc<http::AppState>, shutdown: CancellationToken) {
    let Some(every) = state.auth_cache.refresh_interval() else {
        return;
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(every) => {
                state
                    .auth_cache
                    .refresh(|ids| http::load_workspace_auths(&state, ids))
                    .await;
            }
        }
    }
}

/// Forgets the buckets of workspaces and IPs that went quiet and expired unknown ids, so the
/// limiters' memory stays small.
async fn prune_limiter(state: Arc<http::AppState>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(Duration::from_secs(60)) => {
                state.limiter.retain_recent();
                state.guard.prune();
                state.auth_cache.prune();
            }
        }
    }
}

async fn prune_inbox(pool: attrsync_db::Pool, config: Config, shutdown: CancellationToken) {
    let keep_for = config.inbox.keep_for;
    retention::every(config.retention, shutdown, || async {
        match store::prune(&pool, keep_for).await {
            Ok(0) => {}
            Ok(rows) => tracing::info!(rows, "pruned the inbox"),
            Err(e) => {
                tracing::warn!(error = %e, "pruning the inbox failed; retried at the next interval")
            }
        }
    })
    .await;
}

/// Starts ingest (what the binary and the tests run).
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    attrsync_runtime::service::start::<Ingest>(config, shutdown).await
}
