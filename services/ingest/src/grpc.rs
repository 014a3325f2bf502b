//! The `IngestService` gRPC API (control plane of the webhook edge).
//!
//! Webhook secrets (HMAC-signed Fyle webhooks) belong to a later part of the design and answer
//! `UNIMPLEMENTED`; production Fyle signs nothing, and the org check stays the baseline.

use std::sync::{Arc, atomic::Ordering};

use attrsync_db::outbox::outbox;
use attrsync_proto::{
    time,
    v1::{
        GetWebhookStatsRequest, RotateWebhookSecretRequest, SetWebhookSecretRequest,
        WebhookSecretResponse, WebhookStats, ingest_service_server::IngestService,
    },
};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use tonic::{Request, Response, Status};

use crate::{http::AppState, store};

#[derive(Debug, Clone)]
pub(crate) struct IngestApi {
    pub(crate) state: Arc<AppState>,
}

fn unavailable(e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "database error");
    Status::unavailable("database unavailable; retry")
}

#[tonic::async_trait]
impl IngestService for IngestApi {
    async fn set_webhook_secret(
        &self,
        _request: Request<SetWebhookSecretRequest>,
    ) -> Result<Response<WebhookSecretResponse>, Status> {
        Err(Status::unimplemented(
            "webhook secrets are not built yet (see the project's open issues)",
        ))
    }

    async fn rotate_webhook_secret(
        &self,
        _request: Request<RotateWebhookSecretRequest>,
    ) -> Result<Response<WebhookSecretResponse>, Status> {
        Err(Status::unimplemented(
            "webhook secrets are not built yet (see the project's open issues)",
        ))
    }

    /// Inbox totals for a workspace; `duplicates` counts this process's acknowledged repeats.
    async fn get_webhook_stats(
        &self,
        request: Request<GetWebhookStatsRequest>,
    ) -> Result<Response<WebhookStats>, Status> {
        let workspace_id = request.get_ref().workspace_id;
        let (accepted, relayed, last) = store::stats(&self.state.pool, workspace_id)
            .await
            .map_err(unavailable)?;
        let mut conn = self.state.pool.get().await.map_err(unavailable)?;
        let pending: i64 = outbox::table
            .filter(outbox::message_key.eq(workspace_id.to_string()))
            .count()
            .get_result(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(Response::new(WebhookStats {
            workspace_id,
            accepted: u64::try_from(accepted).unwrap_or(0),
            duplicates: std::sync::atomic::AtomicU64::load(
                &self.state.duplicates,
                Ordering::Relaxed,
            ),
            relayed: u64::try_from(relayed - pending).unwrap_or(0),
            pending_relay: u64::try_from(pending).unwrap_or(0),
            last_received_at: last.map(time::to_proto),
        }))
    }
}
