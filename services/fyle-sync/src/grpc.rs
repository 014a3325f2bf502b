//! The `FyleSyncService` gRPC API.
//!
//! Reads are served from fyle-sync's own tables; `ConnectFyle` and `GetAccessToken` are
//! [`crate::connection`] (and [`crate::subscription`], which `ConnectFyle` ends with),
//! `SyncDimensions` is [`crate::pull`]. `GetSyncStatus` shows, per pulled resource, the
//! watermark, last runs and what the last one did, the attributes stored, the missed webhooks
//! and whether it is in webhook mode; and for the workspace its webhook health and schedule
//! ([`crate::schedule`]) and its Fyle subscription. Every failure maps to one status
//! in [`status`]: bad input `INVALID_ARGUMENT`, unknown workspace `NOT_FOUND`, a connection that
//! is missing, broken or of another org `FAILED_PRECONDITION`, Fyle or the database down
//! `UNAVAILABLE` (a fixed message; the cause is logged). No status carries a secret or database
//! text.

use std::collections::HashMap;

use attrsync_core::{attribute::CUSTOM_PREFIX, webhook::FyleResource, webhook_health};
use attrsync_db::{DbError, Pool};
use attrsync_kafka::workspaces::WorkspaceDirectory;
use attrsync_proto::{
    time,
    v1::{
        AccessToken, ConnectFyleRequest, ConnectFyleResponse, ExpenseAttribute, FyleSyncStatus,
        GetAccessTokenRequest, GetFyleSyncStatusRequest, ListExpenseAttributesRequest,
        ListExpenseAttributesResponse, ResourceSyncState, SyncFyleDimensionsRequest,
        SyncFyleDimensionsResponse, WebhookHealthStatus, WebhookSubscription,
        fyle_sync_service_server::FyleSyncService,
    },
};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::Value;
use tonic::{Request, Response, Status};

use crate::{
    config::ReconcileConfig,
    connection::{CONNECTED, FyleAccess, FyleError},
    pull::{self, Puller},
    schedule,
    schema::{expense_attributes as ea, fyle_sync_state as state, webhook_event_counts as counts},
    subscription::Subscriptions,
};

#[derive(Clone)]
pub(crate) struct FyleSyncApi {
    pub(crate) pool: Pool,
    pub(crate) fyle: FyleAccess,
    pub(crate) puller: Puller,
    pub(crate) subscriptions: Subscriptions,
    pub(crate) directory: WorkspaceDirectory,
    pub(crate) reconcile: ReconcileConfig,
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
        // The cause may carry a dependency's own text (a database error inside a workspace
        // lookup or the rate limiter): logged, never returned.
        FyleError::Unavailable(cause) => {
            tracing::warn!(%cause, "request failed: a dependency is unavailable");
            Status::unavailable("Fyle, ingest, mapping or the database is unavailable; retry")
        }
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
    missed_webhooks: i64,
    last_run: Option<String>,
    last_run_at: Option<DateTime<Utc>>,
    last_run_rows: i32,
    last_run_changed: i32,
    last_run_deleted: i32,
    last_run_missed: i32,
}

/// The pulled resource whose attributes rows of `attribute_type` are: a fixed type's own, and
/// for custom types (options of SELECT fields, dependent values) and merchants EXPENSE_FIELD.
fn resource_of(attribute_type: &str) -> Option<FyleResource> {
    pull::PULLED
        .into_iter()
        .find(|r| match r.fixed_attribute_type() {
            Some(t) => t.as_str() == attribute_type,
            None => attribute_type.starts_with(CUSTOM_PREFIX) || attribute_type == "MERCHANT",
        })
}

fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
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
        // The connection is stored; a subscription that cannot be registered now is PENDING
        // and retried by the scheduler (see `subscription`).
        let webhook_subscription = self
            .subscriptions
            .register(r.workspace_id)
            .await
            .map_err(unavailable)?;
        Ok(Response::new(ConnectFyleResponse {
            org_id,
            cluster_domain,
            webhook_subscription: webhook_subscription.to_owned(),
        }))
    }

    async fn sync_dimensions(
        &self,
        request: Request<SyncFyleDimensionsRequest>,
    ) -> Result<Response<SyncFyleDimensionsResponse>, Status> {
        let r = request.into_inner();
        let resources = pull::requested(&r.attribute_types).map_err(Status::invalid_argument)?;
        // Webhook mode per resource from the workspace projection; a workspace it cannot find
        // (yet) is treated as polling: a pull is never skipped on a guess.
        let workspace = self.directory.lookup(r.workspace_id).await.live();
        let report = self
            .puller
            .sync(
                r.workspace_id,
                (r.force, r.incremental),
                &resources,
                |resource| {
                    workspace
                        .as_ref()
                        .is_some_and(|w| schedule::webhook_mode(w, resource))
                },
            )
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
        let stored: Vec<(String, bool, i64)> = ea::table
            .filter(ea::workspace_id.eq(workspace_id))
            .group_by((ea::attribute_type, ea::active))
            .select((ea::attribute_type, ea::active, diesel::dsl::count_star()))
            .load(&mut conn)
            .await
            .map_err(unavailable)?;
        let health = attrsync_kafka::webhook_health::load(&mut conn, workspace_id)
            .await
            .map_err(unavailable)?;
        drop(conn);
        let connection = self.fyle.stored(workspace_id).await.map_err(status)?;
        let subscription = self
            .subscriptions
            .stored(workspace_id)
            .await
            .map_err(unavailable)?;
        let workspace = self.directory.lookup(workspace_id).await.live();
        let (applied, ignored, last_event_at) = counted.unwrap_or((0, 0, None));

        let mut attributes: HashMap<String, (u64, u64)> = HashMap::new();
        for (attribute_type, active, n) in &stored {
            if let Some(resource) = resource_of(attribute_type) {
                let entry = attributes.entry(resource.as_str().to_owned()).or_default();
                let n = u64::try_from(*n).unwrap_or(0);
                entry.1 += n;
                if *active {
                    entry.0 += n;
                }
            }
        }
        let current = health.as_ref().map(|h| h.health()).unwrap_or_default();
        let resources = pull::PULLED
            .iter()
            .map(|resource| {
                let name = resource.as_str();
                let (active, total) = attributes.get(name).copied().unwrap_or_default();
                let mut r = ResourceSyncState {
                    attribute_type: name.to_owned(),
                    webhook_health: current.as_str().to_owned(),
                    webhook_mode: workspace
                        .as_ref()
                        .is_some_and(|w| schedule::webhook_mode(w, resource)),
                    attributes_active: active,
                    attributes_total: total,
                    ..Default::default()
                };
                if let Some(s) = states.iter().find(|s| s.attribute_type == name) {
                    r.last_full_sync_at = s.last_full_sync_at.map(time::to_proto);
                    r.last_incremental_sync_at = s.last_incremental_sync_at.map(time::to_proto);
                    r.last_reconcile_at = s.last_reconcile_at.map(time::to_proto);
                    r.watermark = s.watermark.map(time::to_proto);
                    r.missed_webhooks = u64::try_from(s.missed_webhooks).unwrap_or(0);
                    r.last_run = s.last_run.clone().unwrap_or_default();
                    r.last_run_at = s.last_run_at.map(time::to_proto);
                    r.last_run_rows = count(s.last_run_rows);
                    r.last_run_changed = count(s.last_run_changed);
                    r.last_run_deleted = count(s.last_run_deleted);
                    r.last_run_missed = count(s.last_run_missed);
                }
                r
            })
            .collect();
        let connected = connection.as_ref().filter(|c| c.status == CONNECTED);
        let next_round_at = connected.filter(|_| self.reconcile.enabled).map(|c| {
            webhook_health::next_round_at(
                health.as_ref().and_then(|h| h.last_round_at),
                c.connected_at,
                current,
                &self.reconcile.schedule(),
            )
        });
        let health_status = WebhookHealthStatus {
            state: current.as_str().to_owned(),
            clean_windows: health
                .as_ref()
                .map_or(0, |h| u32::try_from(h.clean_windows).unwrap_or(0)),
            last_window_missed: health
                .as_ref()
                .map_or(0, |h| u64::try_from(h.last_window_missed).unwrap_or(0)),
            missed_total: health
                .as_ref()
                .map_or(0, |h| u64::try_from(h.missed_total).unwrap_or(0)),
            last_window_at: health
                .as_ref()
                .and_then(|h| h.last_window_at)
                .map(time::to_proto),
            changed_at: health
                .as_ref()
                .and_then(|h| h.changed_at)
                .map(time::to_proto),
            poll_interval_seconds: u32::try_from(
                webhook_health::poll_interval(current, &self.reconcile.schedule()).as_secs(),
            )
            .unwrap_or(u32::MAX),
            next_round_at: next_round_at.map(time::to_proto),
        };
        let subscription_status = match &subscription {
            None => WebhookSubscription {
                status: "NOT_REGISTERED".into(),
                ..Default::default()
            },
            Some(s) => WebhookSubscription {
                status: s.status.clone(),
                subscription_id: s.subscription_id.clone().unwrap_or_default(),
                last_error: s.last_error.clone().unwrap_or_default(),
                attempts: u32::try_from(s.attempts).unwrap_or(0),
                registered_at: s.registered_at.map(time::to_proto),
                next_attempt_at: (s.status == crate::subscription::PENDING)
                    .then(|| time::to_proto(s.next_attempt_at)),
            },
        };
        Ok(Response::new(FyleSyncStatus {
            workspace_id,
            webhook_events_applied: u64::try_from(applied).unwrap_or(0),
            webhook_events_ignored: u64::try_from(ignored).unwrap_or(0),
            last_event_at: last_event_at.map(time::to_proto),
            source_synced_at: None,
            resources,
            fyle_connection: connection
                .as_ref()
                .map_or_else(|| "NOT_CONNECTED".to_owned(), |c| c.status.clone()),
            fyle_connection_reason: connection
                .as_ref()
                .and_then(|c| c.status_reason.clone())
                .unwrap_or_default(),
            fyle_connection_changed_at: connection.as_ref().map(|c| time::to_proto(c.status_at)),
            health: Some(health_status),
            webhook_subscription: Some(subscription_status),
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
