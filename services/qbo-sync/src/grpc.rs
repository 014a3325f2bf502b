//! The `QboSyncService` gRPC API.
//!
//! Reads are served from qbo-sync's own tables; `ConnectQbo` is [`crate::connection`],
//! `SyncDimensions` is [`crate::pull`]. Every failure maps to one status in [`status`]: bad
//! input `INVALID_ARGUMENT`, unknown workspace `NOT_FOUND`, a connection that is missing,
//! expired or of another realm `FAILED_PRECONDITION`, QBO or the database down `UNAVAILABLE`
//! (with a fixed message; the cause is logged). No status carries a secret or database text. `CreateEntity` is [`crate::auto_create`].
//! `GetSyncStatus` shows, per entity, what the last pass did (and whether the entity is in
//! webhook mode, its missed webhooks), and for the workspace its webhook health and reconcile
//! schedule ([`crate::reconcile`]).

use std::collections::HashMap;

use attrsync_core::webhook_health;
use attrsync_db::{DbError, Pool};
use attrsync_kafka::{
    webhook_health::{self as health, HealthRow},
    workspaces::{Lookup, ProjectedWorkspace, WorkspaceDirectory},
};
use attrsync_proto::{
    time,
    v1::{
        AttributeCounts, ConnectQboRequest, ConnectQboResponse, CreateEntityRequest,
        DestinationAttribute, EntityPull as ProtoEntityPull, EntitySyncState,
        GetAttributeCountsRequest, GetQboSyncStatusRequest, ListDestinationAttributesRequest,
        ListDestinationAttributesResponse, QboSyncStatus, SyncQboDimensionsRequest,
        SyncQboDimensionsResponse, WebhookHealthStatus, qbo_sync_service_server::QboSyncService,
    },
};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::Value;
use tonic::{Request, Response, Status};

use crate::{
    config::ReconcileConfig,
    connection::{QboAccess, QboError},
    pull::{self, PassKind, Puller},
    reconcile,
    rules::SyncEntity,
    schema::{
        destination_attributes as da, qbo_attribute_counts as counts,
        qbo_pending_changes as pending, qbo_sync_state as state, qbo_workspace_sync as synced,
    },
    settings,
};

#[derive(Clone)]
pub(crate) struct QboSyncApi {
    pub(crate) pool: Pool,
    pub(crate) access: QboAccess,
    pub(crate) puller: Puller,
    pub(crate) directory: WorkspaceDirectory,
    pub(crate) creator: crate::auto_create::Creator,
    pub(crate) reconcile: ReconcileConfig,
}

impl std::fmt::Debug for QboSyncApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QboSyncApi").finish_non_exhaustive()
    }
}

/// The one place a [`QboError`] becomes a gRPC status.
fn status(e: QboError) -> Status {
    match e {
        QboError::UnknownWorkspace(_) => Status::not_found(e.to_string()),
        QboError::NoRealm(_)
        | QboError::RealmMismatch { .. }
        | QboError::NotConnected(_)
        | QboError::Expired(..) => Status::failed_precondition(e.to_string()),
        QboError::GrantRefused(_) | QboError::InvalidArgument(_) => {
            Status::invalid_argument(e.to_string())
        }
        // The cause may carry a dependency's own text (a database error inside a projection
        // lookup or the rate limiter): logged, never returned.
        QboError::Unavailable(cause) => {
            tracing::warn!(%cause, "request failed: a dependency is unavailable");
            Status::unavailable("QBO, mapping or the database is unavailable; retry")
        }
        QboError::Rejected(_) => Status::internal(e.to_string()),
        QboError::Db(e) => unavailable(e),
    }
}

fn unavailable(e: impl Into<DbError>) -> Status {
    let e = e.into();
    tracing::error!(error = %e, "database error");
    Status::unavailable("database unavailable; retry")
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = da)]
struct AttributeRow {
    id: i64,
    workspace_id: i64,
    attribute_type: String,
    display_name: String,
    value: String,
    destination_id: String,
    code: Option<String>,
    active: bool,
    detail: Value,
    auto_created: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<AttributeRow> for DestinationAttribute {
    fn from(r: AttributeRow) -> Self {
        DestinationAttribute {
            id: r.id,
            workspace_id: r.workspace_id,
            attribute_type: r.attribute_type,
            display_name: r.display_name,
            value: r.value,
            destination_id: r.destination_id,
            code: r.code,
            active: r.active,
            detail_json: if r.detail.is_null() {
                String::new()
            } else {
                r.detail.to_string()
            },
            auto_created: r.auto_created,
            created_at: Some(time::to_proto(r.created_at)),
            updated_at: Some(time::to_proto(r.updated_at)),
        }
    }
}

#[derive(Queryable)]
struct StateRow {
    qbo_entity: String,
    watermark: Option<DateTime<Utc>>,
    last_full_sync_at: Option<DateTime<Utc>>,
    last_incremental_sync_at: Option<DateTime<Utc>>,
    last_reconcile_at: Option<DateTime<Utc>>,
    last_attempt_at: Option<DateTime<Utc>>,
    last_outcome: Option<String>,
    missed_webhooks: i64,
    last_run: Option<String>,
    last_run_missed: i32,
    last_run_deferred: i32,
}

/// The workspace's health and schedule as `GetSyncStatus` shows it; `connected_at` is the
/// realm's, when it is connected (else no round is due).
fn health_status(
    row: Option<&HealthRow>,
    connected_at: Option<DateTime<Utc>>,
    reconcile: &ReconcileConfig,
) -> WebhookHealthStatus {
    let current = row.map(HealthRow::health).unwrap_or_default();
    let schedule = reconcile.schedule();
    let next_round_at = connected_at.filter(|_| reconcile.enabled).map(|c| {
        webhook_health::next_round_at(row.and_then(|h| h.last_round_at), c, current, &schedule)
    });
    WebhookHealthStatus {
        state: current.as_str().to_owned(),
        clean_windows: row.map_or(0, |h| u32::try_from(h.clean_windows).unwrap_or(0)),
        last_window_missed: row.map_or(0, |h| u64::try_from(h.last_window_missed).unwrap_or(0)),
        missed_total: row.map_or(0, |h| u64::try_from(h.missed_total).unwrap_or(0)),
        last_window_at: row.and_then(|h| h.last_window_at).map(time::to_proto),
        changed_at: row.and_then(|h| h.changed_at).map(time::to_proto),
        poll_interval_seconds: u32::try_from(
            webhook_health::poll_interval(current, &schedule).as_secs(),
        )
        .unwrap_or(u32::MAX),
        next_round_at: next_round_at.map(time::to_proto),
    }
}

impl QboSyncApi {
    async fn projected(&self, workspace_id: i64) -> Result<ProjectedWorkspace, Status> {
        match self.directory.lookup(workspace_id).await {
            Lookup::Found(w) if !w.deleted => Ok(w),
            Lookup::Found(_) | Lookup::Unknown => {
                Err(status(QboError::UnknownWorkspace(workspace_id)))
            }
            Lookup::Unavailable(reason) => Err(status(QboError::Unavailable(reason))),
        }
    }

    async fn workspace(&self, workspace_id: i64) -> Result<settings::QboWorkspace, Status> {
        match self.directory.lookup(workspace_id).await {
            Lookup::Found(w) if !w.deleted => Ok(settings::of(&w)),
            Lookup::Found(_) | Lookup::Unknown => {
                Err(status(QboError::UnknownWorkspace(workspace_id)))
            }
            Lookup::Unavailable(reason) => Err(status(QboError::Unavailable(reason))),
        }
    }
}

#[tonic::async_trait]
impl QboSyncService for QboSyncApi {
    async fn connect_qbo(
        &self,
        request: Request<ConnectQboRequest>,
    ) -> Result<Response<ConnectQboResponse>, Status> {
        let r = request.into_inner();
        let company_name = self
            .access
            .connect(
                r.workspace_id,
                &r.realm_id,
                r.authorization_code.as_deref(),
                r.refresh_token.as_deref(),
            )
            .await
            .map_err(status)?;
        Ok(Response::new(ConnectQboResponse {
            realm_id: r.realm_id,
            company_name,
        }))
    }

    async fn sync_dimensions(
        &self,
        request: Request<SyncQboDimensionsRequest>,
    ) -> Result<Response<SyncQboDimensionsResponse>, Status> {
        let r = request.into_inner();
        let entities = pull::requested(&r.attribute_types).map_err(Status::invalid_argument)?;
        let workspace = self.workspace(r.workspace_id).await?;
        let kind = if r.incremental {
            PassKind::Incremental
        } else {
            PassKind::Full
        };
        let report = self
            .puller
            .sync(&workspace, r.force, kind, &entities)
            .await
            .map_err(status)?;
        Ok(Response::new(SyncQboDimensionsResponse {
            pulled: report.iter().any(|p| p.outcome.starts_with("PULLED")),
            attributes_changed: report.iter().map(|p| p.changed).sum(),
            entities: report
                .into_iter()
                .map(|p| ProtoEntityPull {
                    entity: p.entity.as_str().to_owned(),
                    outcome: p.outcome.to_owned(),
                    fetched: p.fetched,
                    changed: p.changed,
                    deactivated: p.deactivated,
                })
                .collect(),
        }))
    }

    async fn list_destination_attributes(
        &self,
        request: Request<ListDestinationAttributesRequest>,
    ) -> Result<Response<ListDestinationAttributesResponse>, Status> {
        let r = request.into_inner();
        let page_size = match r.page_size {
            0 => 100,
            n => i64::from(n.min(1000)),
        };
        let mut query = da::table
            .filter(da::workspace_id.eq(r.workspace_id))
            .filter(da::id.gt(r.after_id))
            .order(da::id)
            .limit(page_size + 1)
            .select(AttributeRow::as_select())
            .into_boxed();
        if let Some(t) = r.attribute_type {
            query = query.filter(da::attribute_type.eq(t));
        }
        if let Some(d) = r.display_name {
            query = query.filter(da::display_name.eq(d));
        }
        if let Some(active) = r.active {
            query = query.filter(da::active.eq(active));
        }
        if let Some(fragment) = r.value_contains {
            query =
                query.filter(da::value.ilike(format!("%{}%", attrsync_db::escape_like(&fragment))));
        }
        let mut conn = self.pool.get().await.map_err(unavailable)?;
        let mut rows: Vec<AttributeRow> = query.load(&mut conn).await.map_err(unavailable)?;
        let more = rows.len() as i64 > page_size;
        rows.truncate(usize::try_from(page_size).unwrap_or(0));
        let next_after_id = if more {
            rows.last().map_or(0, |r| r.id)
        } else {
            0
        };
        Ok(Response::new(ListDestinationAttributesResponse {
            attributes: rows.into_iter().map(Into::into).collect(),
            next_after_id,
        }))
    }

    async fn get_sync_status(
        &self,
        request: Request<GetQboSyncStatusRequest>,
    ) -> Result<Response<QboSyncStatus>, Status> {
        let workspace_id = request.get_ref().workspace_id;
        let projected = self.projected(workspace_id).await?;
        let workspace = settings::of(&projected);
        let mut conn = self.pool.get().await.map_err(unavailable)?;
        let states: Vec<StateRow> = state::table
            .filter(state::workspace_id.eq(workspace_id))
            .order(state::qbo_entity)
            .select((
                state::qbo_entity,
                state::watermark,
                state::last_full_sync_at,
                state::last_incremental_sync_at,
                state::last_reconcile_at,
                state::last_attempt_at,
                state::last_outcome,
                state::missed_webhooks,
                state::last_run,
                state::last_run_missed,
                state::last_run_deferred,
            ))
            .load(&mut conn)
            .await
            .map_err(unavailable)?;
        let counted: HashMap<String, i64> = counts::table
            .filter(counts::workspace_id.eq(workspace_id))
            .select((counts::qbo_entity, counts::active_count))
            .load::<(String, i64)>(&mut conn)
            .await
            .map_err(unavailable)?
            .into_iter()
            .collect();
        let synced_at: Option<DateTime<Utc>> = synced::table
            .find(workspace_id)
            .select(synced::destination_synced_at)
            .first::<Option<DateTime<Utc>>>(&mut conn)
            .await
            .optional()
            .map_err(unavailable)?
            .flatten();
        let pending_changes: i64 = pending::table
            .filter(pending::workspace_id.eq(workspace_id))
            .count()
            .get_result(&mut conn)
            .await
            .map_err(unavailable)?;
        let health_row = health::load(&mut conn, workspace_id)
            .await
            .map_err(unavailable)?;
        let connected_at = match &workspace.realm_id {
            Some(realm) => reconcile::connected_at(&mut conn, realm)
                .await
                .map_err(unavailable)?,
            None => None,
        };
        drop(conn);
        let health = health_status(health_row.as_ref(), connected_at, &self.reconcile);
        let connection = match &workspace.realm_id {
            Some(realm) => self.access.stored(realm).await.map_err(status)?,
            None => None,
        };
        Ok(Response::new(QboSyncStatus {
            workspace_id,
            destination_synced_at: synced_at.map(time::to_proto),
            entities: states
                .into_iter()
                .map(|s| EntitySyncState {
                    active_count: counted
                        .get(&s.qbo_entity)
                        .and_then(|c| u64::try_from(*c).ok()),
                    last_full_sync_at: s.last_full_sync_at.map(time::to_proto),
                    last_incremental_sync_at: s.last_incremental_sync_at.map(time::to_proto),
                    watermark: s.watermark.map(time::to_proto),
                    last_attempt_at: s.last_attempt_at.map(time::to_proto),
                    last_outcome: s.last_outcome.unwrap_or_default(),
                    webhook_health: health.state.clone(),
                    missed_webhooks: u64::try_from(s.missed_webhooks).unwrap_or(0),
                    last_reconcile_at: s.last_reconcile_at.map(time::to_proto),
                    webhook_mode: s
                        .qbo_entity
                        .parse::<SyncEntity>()
                        .is_ok_and(|e| reconcile::webhook_mode(&projected, e)),
                    last_run: s.last_run.unwrap_or_default(),
                    last_run_missed: u32::try_from(s.last_run_missed).unwrap_or(0),
                    last_run_deferred: u32::try_from(s.last_run_deferred).unwrap_or(0),
                    entity: s.qbo_entity,
                })
                .collect(),
            qbo_connection: connection
                .as_ref()
                .map_or_else(|| "NOT_CONNECTED".to_owned(), |c| c.status.clone()),
            qbo_connection_reason: connection
                .as_ref()
                .and_then(|c| c.status_reason.clone())
                .unwrap_or_default(),
            company_name: connection
                .as_ref()
                .and_then(|c| c.company_name.clone())
                .unwrap_or_default(),
            pending_changes: u64::try_from(pending_changes).unwrap_or(0),
            health: Some(health),
        }))
    }

    async fn get_attribute_counts(
        &self,
        request: Request<GetAttributeCountsRequest>,
    ) -> Result<Response<AttributeCounts>, Status> {
        let workspace_id = request.get_ref().workspace_id;
        let mut conn = self.pool.get().await.map_err(unavailable)?;
        let rows: Vec<(String, i64, DateTime<Utc>)> = counts::table
            .filter(counts::workspace_id.eq(workspace_id))
            .select((counts::qbo_entity, counts::active_count, counts::counted_at))
            .load(&mut conn)
            .await
            .map_err(unavailable)?;
        let counted_at = rows.iter().map(|r| r.2).max().unwrap_or_else(Utc::now);
        Ok(Response::new(AttributeCounts {
            counts: rows
                .into_iter()
                .map(|(entity, n, _)| (entity, u64::try_from(n).unwrap_or(0)))
                .collect(),
            counted_at: Some(time::to_proto(counted_at)),
        }))
    }

    /// Finds or creates one QBO Employee or Vendor by the auto-create path
    /// ([`crate::auto_create::creator::ensure`]) and returns its stored row. A name that cannot be had
    /// (an inactive entity or another list holds it) is `ALREADY_EXISTS`, with the reason.
    async fn create_entity(
        &self,
        request: Request<CreateEntityRequest>,
    ) -> Result<Response<DestinationAttribute>, Status> {
        use crate::{auto_create, rules::SyncEntity};
        let r = request.into_inner();
        let entity = match r.attribute_type.trim().to_ascii_uppercase().as_str() {
            "EMPLOYEE" => SyncEntity::Employee,
            "VENDOR" => SyncEntity::Vendor,
            other => {
                return Err(Status::invalid_argument(format!(
                    "CreateEntity creates EMPLOYEE or VENDOR, not {other:?}"
                )));
            }
        };
        let display_name = r.display_name.trim().to_owned();
        auto_create::check_name(&display_name).map_err(|skip| {
            Status::invalid_argument(format!(
                "display_name is not a QBO name ({})",
                skip.as_str()
            ))
        })?;
        let nonblank = |s: Option<String>| s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let create = auto_create::CreateRequest {
            entity,
            display_name,
            email: nonblank(r.email),
            currency: nonblank(r.currency),
        };
        let workspace = self.workspace(r.workspace_id).await?;
        let row_id = self
            .creator
            .create_now(&workspace, &create)
            .await
            .map_err(status)?
            .map_err(Status::already_exists)?;
        let mut conn = self.pool.get().await.map_err(unavailable)?;
        let row: AttributeRow = da::table
            .find(row_id)
            .select(AttributeRow::as_select())
            .first(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(Response::new(row.into()))
    }
}
