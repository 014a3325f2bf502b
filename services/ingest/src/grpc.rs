//! The `IngestService` gRPC API (control plane of the webhook edge).
//!
//! Per workspace: the authentication mode of its Fyle webhooks (`SetAuthMode`), rotation of its
//! URL token or HMAC secret with an overlap (`RotateWebhookSecret`), the URL to register with
//! Fyle (`GetWebhookEndpoint`, token included) and inbox totals (`GetWebhookStats`). A new HMAC
//! secret is returned once and stored only sealed; tokens and secrets never reach logs.

use std::sync::Arc;

use attrsync_db::outbox::outbox;
use attrsync_proto::{
    time,
    v1::{
        GetWebhookEndpointRequest, GetWebhookStatsRequest, RotateWebhookSecretRequest,
        SetAuthModeRequest, WebhookAuth, WebhookAuthMode, WebhookEndpoint, WebhookStats,
        ingest_service_server::IngestService,
    },
};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use tonic::{Request, Response, Status};

use attrsync_kafka::workspaces::Lookup;

use crate::{auth::AuthMode, credentials, http::AppState, store};

#[derive(Debug, Clone)]
pub(crate) struct IngestApi {
    pub(crate) state: Arc<AppState>,
    /// The default overlap of a rotation.
    pub(crate) secret_overlap: std::time::Duration,
}

fn unavailable(e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "database error");
    Status::unavailable("database unavailable; retry")
}

fn to_proto_mode(mode: AuthMode) -> WebhookAuthMode {
    match mode {
        AuthMode::UrlToken => WebhookAuthMode::UrlToken,
        AuthMode::Hmac => WebhookAuthMode::Hmac,
        AuthMode::OrgCheckOnly => WebhookAuthMode::OrgCheckOnly,
    }
}

fn answer(workspace_id: i64, changed: credentials::Changed) -> WebhookAuth {
    WebhookAuth {
        workspace_id,
        mode: to_proto_mode(changed.mode) as i32,
        secret: changed.new_hmac_secret.unwrap_or_default(),
        active_since: Some(time::to_proto(changed.active_since)),
        previous_valid_until: changed.previous_valid_until.map(time::to_proto),
    }
}

impl IngestApi {
    /// The workspace must exist (projection, then mapping).
    async fn known_workspace(&self, workspace_id: i64) -> Result<(), Status> {
        match self.state.directory.lookup(workspace_id).await {
            Lookup::Found(row) if !row.deleted => Ok(()),
            Lookup::Found(_) | Lookup::Unknown => Err(Status::not_found(format!(
                "workspace {workspace_id} does not exist"
            ))),
            Lookup::Unavailable(_) => {
                Err(Status::unavailable("workspace lookup unavailable; retry"))
            }
        }
    }
}

#[tonic::async_trait]
impl IngestService for IngestApi {
    async fn set_auth_mode(
        &self,
        request: Request<SetAuthModeRequest>,
    ) -> Result<Response<WebhookAuth>, Status> {
        let request = request.into_inner();
        let mode = match request.mode() {
            WebhookAuthMode::UrlToken => AuthMode::UrlToken,
            WebhookAuthMode::Hmac => AuthMode::Hmac,
            WebhookAuthMode::OrgCheckOnly => AuthMode::OrgCheckOnly,
            WebhookAuthMode::Unspecified => {
                return Err(Status::invalid_argument("mode must be set"));
            }
        };
        self.known_workspace(request.workspace_id).await?;
        let changed = credentials::set_mode(
            &self.state.pool,
            &self.state.keyring,
            request.workspace_id,
            mode,
        )
        .await
        .map_err(unavailable)?;
        self.state.auth_cache.forget(request.workspace_id);
        tracing::info!(
            workspace_id = request.workspace_id,
            mode = mode.as_str(),
            "webhook auth mode set"
        );
        Ok(Response::new(answer(request.workspace_id, changed)))
    }

    async fn rotate_webhook_secret(
        &self,
        request: Request<RotateWebhookSecretRequest>,
    ) -> Result<Response<WebhookAuth>, Status> {
        let request = request.into_inner();
        self.known_workspace(request.workspace_id).await?;
        let overlap = match request.overlap_seconds {
            0 => self.secret_overlap,
            seconds => std::time::Duration::from_secs(u64::from(seconds)),
        };
        let changed = credentials::rotate(
            &self.state.pool,
            &self.state.keyring,
            self.state.default_mode,
            request.workspace_id,
            overlap,
        )
        .await
        .map_err(unavailable)?
        .ok_or_else(|| {
            Status::failed_precondition("org_check_only mode has no secret to rotate")
        })?;
        self.state.auth_cache.forget(request.workspace_id);
        tracing::info!(
            workspace_id = request.workspace_id,
            "webhook secret rotated"
        );
        Ok(Response::new(answer(request.workspace_id, changed)))
    }

    async fn get_webhook_endpoint(
        &self,
        request: Request<GetWebhookEndpointRequest>,
    ) -> Result<Response<WebhookEndpoint>, Status> {
        let workspace_id = request.get_ref().workspace_id;
        self.known_workspace(workspace_id).await?;
        let (mode, token) = credentials::endpoint_token(
            &self.state.pool,
            &self.state.keyring,
            self.state.default_mode,
            workspace_id,
        )
        .await
        .map_err(unavailable)?;
        // A token created just now must be accepted at once.
        self.state.auth_cache.forget(workspace_id);
        let mut url = format!(
            "{}/workspaces/{workspace_id}/fyle/exports/",
            self.state.public_url
        );
        if let Some(token) = token {
            url.push_str("?token=");
            url.push_str(&token);
        }
        Ok(Response::new(WebhookEndpoint {
            workspace_id,
            url,
            mode: to_proto_mode(mode) as i32,
        }))
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
