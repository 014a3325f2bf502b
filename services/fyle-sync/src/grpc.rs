//! The `FyleSyncService` gRPC API.
//!
//! Reads are served from fyle-sync's own tables; `ConnectFyle` and `GetAccessToken` are
//! [`crate::connection`], `SyncDimensions` is [`crate::pull`]. Every failure maps to one status
//! in [`status`]: bad input `INVALID_ARGUMENT`, unknown workspace `NOT_FOUND`, a connection that
//! is missing, broken or of another org `FAILED_PRECONDITION`, Fyle or the database down
//! `UNAVAILABLE`. No status carries a secret or database text.

use attrsync_db::{DbError, Pool};
use attrsync_proto::{
    time,
    v1::{
        AccessToken, ConnectFyleRequest, ConnectFyleResponse, ExpenseAttribute, FyleSyncStatus,
        GetAccessTokenRequest, GetFyleSyncStatusRequest, ListExpenseAttributesRequest,
        ListExpenseAttributesResponse, ResourceSyncState, SyncFyleDimensionsRequest,
        SyncFyleDimensionsResponse, fyle_sync_service_server::FyleSyncService,
    },
};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::Value;
use tonic::{Request, Response, Status};

use crate::{
    connection::{FyleAccess, FyleError},
    pull::{self, Puller},
    schema::{expense_attributes as ea, fyle_sync_state as state, webhook_event_counts as counts},
};

#[derive(Clone)]
pub(crate) struct FyleSyncApi {
    pub(crate) pool: Pool,
    pub(crate) fyle: FyleAccess,
    pub(crate) puller: Puller,
}

/// The one place a [`FyleError`] becomes a gRPC status.
fn status(e: FyleError) -> Status {
    match e {
        FyleError::UnknownWorkspace(_) => Status::not_found(e.to_string()),
        FyleError::NotConnected(_) | FyleError::Broken(..) | FyleError::OrgMismatch { .. } => {
            Status::failed_precondition(e.to_string())
        }
        FyleError::CredentialsRefused(_) | FyleError::InvalidArgument(_) => {
            Status::invalid_argument(e.to_string())
        }
        FyleError::Unavailable(_) => Status::unavailable(e.to_string()),
        FyleError::Rejected(_) => Status::internal(e.to_string()),
        FyleError::Db(e) => unavailable(e),
    }
}

impl std::fmt::Debug for FyleSyncApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FyleSyncApi").finish_non_exhaustive()
    }
}

fn unavailable(e: impl Into<DbError>) -> Status {
    let e = e.into();
    tracing::error!(error = %e, "database error");
    Status::unavailable("database unavailable; retry")
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = ea)]
struct AttributeRow {
    id: i64,
    workspace_id: i64,
    attribute_type: String,
    display_name: String,
    value: String,
    source_id: String,
    active: bool,
    detail: Option<Value>,
    auto_mapped: bool,
    source_updated_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<AttributeRow> for ExpenseAttribute {
    fn from(r: AttributeRow) -> Self {
        ExpenseAttribute {
            id: r.id,
            workspace_id: r.workspace_id,
            attribute_type: r.attribute_type,
            display_name: r.display_name,
            value: r.value,
            source_id: r.source_id,
            active: r.active,
            detail_json: r.detail.map(|d| d.to_string()).unwrap_or_default(),
            auto_mapped: r.auto_mapped,
            source_updated_at: r.source_updated_at.map(time::to_proto),
            created_at: Some(time::to_proto(r.created_at)),
            updated_at: Some(time::to_proto(r.updated_at)),
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = state)]
struct StateRow {
    attribute_type: String,
    watermark: Option<DateTime<Utc>>,
    last_full_sync_at: Option<DateTime<Utc>>,
    last_incremental_sync_at: Option<DateTime<Utc>>,
    last_reconcile_at: Option<DateTime<Utc>>,
    webhook_health: String,
    missed_webhooks: i64,
}

#[tonic::async_trait]
impl FyleSyncService for FyleSyncApi {
    async fn connect_fyle(
        &self,
        request: Request<ConnectFyleRequest>,
    ) -> Result<Response<ConnectFyleResponse>, Status> {
        let r = request.into_inner();
        if r.authorization_code.is_some() {
            return Err(Status::unimplemented(
                "ConnectFyle takes a refresh_token; authorization codes are not exchanged yet",
            ));
        }
        let token = r.refresh_token.unwrap_or_default();
        let (org_id, cluster_domain) = self
            .fyle
            .connect(r.workspace_id, &token)
            .await
            .map_err(status)?;
        Ok(Response::new(ConnectFyleResponse {
            org_id,
            cluster_domain,
        }))
    }

    async fn sync_dimensions(
        &self,
        request: Request<SyncFyleDimensionsRequest>,
    ) -> Result<Response<SyncFyleDimensionsResponse>, Status> {
        let r = request.into_inner();
        let resources = pull::requested(&r.attribute_types).map_err(Status::invalid_argument)?;
        let report = self
            .puller
            .sync(r.workspace_id, r.force, r.incremental, &resources)
            .await
            .map_err(status)?;
        Ok(Response::new(SyncFyleDimensionsResponse {
            pulled: report
                .resources
                .iter()
                .any(|p| p.outcome.starts_with("PULLED")),
            attributes_changed: report.resources.iter().map(|p| p.changed).sum(),
            resources: report.resources,
        }))
    }

    async fn list_expense_attributes(
        &self,
        request: Request<ListExpenseAttributesRequest>,
    ) -> Result<Response<ListExpenseAttributesResponse>, Status> {
        let r = request.into_inner();
        let page_size = match r.page_size {
            0 => 100,
            n => i64::from(n.min(1000)),
        };
        let mut query = ea::table
            .filter(ea::workspace_id.eq(r.workspace_id))
            .filter(ea::id.gt(r.after_id))
            .order(ea::id)
            .limit(page_size + 1)
            .select(AttributeRow::as_select())
            .into_boxed();
        if let Some(t) = r.attribute_type {
            query = query.filter(ea::attribute_type.eq(t));
        }
        if let Some(active) = r.active {
            query = query.filter(ea::active.eq(active));
        }
        if let Some(source_id) = r.source_id {
            query = query.filter(ea::source_id.eq(source_id));
        }
        if let Some(since) = r.updated_since.as_ref().and_then(time::from_proto) {
            query = query.filter(ea::updated_at.ge(since));
        }
        if let Some(fragment) = r.value_contains {
            let escaped = crate::apply::escape_like(&fragment);
            query = query.filter(ea::value.ilike(format!("%{escaped}%")));
        }
        let mut conn = self.pool.get().await.map_err(unavailable)?;
        let mut rows: Vec<AttributeRow> = query.load(&mut conn).await.map_err(unavailable)?;
        let more = rows.len() as i64 > page_size;
        rows.truncate(page_size as usize);
        let next_after_id = if more {
            rows.last().map_or(0, |r| r.id)
        } else {
            0
        };
        Ok(Response::new(ListExpenseAttributesResponse {
            attributes: rows.into_iter().map(Into::into).collect(),
            next_after_id,
        }))
    }

    async fn get_sync_status(
        &self,
        request: Request<GetFyleSyncStatusRequest>,
    ) -> Result<Response<FyleSyncStatus>, Status> {
        let workspace_id = request.get_ref().workspace_id;
        let mut conn = self.pool.get().await.map_err(unavailable)?;
        let counted: Option<(i64, i64, Option<DateTime<Utc>>)> = counts::table
            .find(workspace_id)
            .select((counts::applied, counts::ignored, counts::last_event_at))
            .first(&mut conn)
            .await
            .optional()
            .map_err(unavailable)?;
        let states: Vec<StateRow> = state::table
            .filter(state::workspace_id.eq(workspace_id))
            .order(state::attribute_type)
            .select(StateRow::as_select())
            .load(&mut conn)
            .await
            .map_err(unavailable)?;
        drop(conn);
        let connection = self.fyle.stored(workspace_id).await.map_err(status)?;
        let (applied, ignored, last_event_at) = counted.unwrap_or((0, 0, None));
        Ok(Response::new(FyleSyncStatus {
            workspace_id,
            webhook_events_applied: u64::try_from(applied).unwrap_or(0),
            webhook_events_ignored: u64::try_from(ignored).unwrap_or(0),
            last_event_at: last_event_at.map(time::to_proto),
            source_synced_at: None,
            resources: states
                .into_iter()
                .map(|s| ResourceSyncState {
                    attribute_type: s.attribute_type,
                    last_full_sync_at: s.last_full_sync_at.map(time::to_proto),
                    last_incremental_sync_at: s.last_incremental_sync_at.map(time::to_proto),
                    last_reconcile_at: s.last_reconcile_at.map(time::to_proto),
                    watermark: s.watermark.map(time::to_proto),
                    webhook_health: s.webhook_health,
                    missed_webhooks: u64::try_from(s.missed_webhooks).unwrap_or(0),
                })
                .collect(),
            fyle_connection: connection
                .as_ref()
                .map_or_else(|| "NOT_CONNECTED".to_owned(), |c| c.status.clone()),
            fyle_connection_reason: connection
                .as_ref()
                .and_then(|c| c.status_reason.clone())
                .unwrap_or_default(),
            fyle_connection_changed_at: connection.as_ref().map(|c| time::to_proto(c.status_at)),
        }))
    }

    async fn get_access_token(
        &self,
        request: Request<GetAccessTokenRequest>,
    ) -> Result<Response<AccessToken>, Status> {
        let grant = self
            .fyle
            .access_token(request.get_ref().workspace_id)
            .await
            .map_err(status)?;
        Ok(Response::new(AccessToken {
            access_token: grant.access_token,
            cluster_domain: grant.cluster_domain,
            expires_at: Some(time::to_proto(grant.expires_at)),
        }))
    }
}
