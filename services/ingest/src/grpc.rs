//! The `IngestService` gRPC API (control plane of the webhook edge).
//!
//! Webhook secrets (HMAC-signed Fyle webhooks) belong to a later part of the design and answer
//! `UNIMPLEMENTED`; production Fyle signs nothing, and the org check stays the baseline.

use std::sync::Arc;

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

    /// Inbox totals for a workspace.
    async fn get_webhook_stats(
        &self,
        request: Request<GetWebhookStatsRequest>,
    ) -> Result<Response<WebhookStats>, Status> {
        let workspace_id = request.get_ref().workspace_id;
        let stats = store::stats(&self.state.pool, workspace_id)
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
            accepted: u64::try_from(stats.accepted).unwrap_or(0),
            duplicates: u64::try_from(stats.duplicates).unwrap_or(0),
            relayed: u64::try_from(stats.published - pending).unwrap_or(0),
            pending_relay: u64::try_from(pending).unwrap_or(0),
            last_received_at: stats.last_received_at.map(time::to_proto),
        }))
    }
}
