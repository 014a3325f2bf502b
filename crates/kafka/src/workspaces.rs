//! A service's projection of the workspace registry.
//!
//! mapping publishes a full snapshot of a workspace on the compacted `settings.workspaces.v1`
//! after every change. Services that need workspace facts (ingest: which org a workspace
//! belongs to and its webhook flags; fyle-sync: the same for validation) consume that topic
//! into their own `workspace_projection` table and never call mapping on the hot path.
//!
//! Applying a snapshot is idempotent and order-proof: a row is replaced only by a snapshot with
//! a higher `version`, so redeliveries and a replay of the compacted topic change nothing.
//!
//! When a message names a workspace the projection lacks, [`WorkspaceDirectory`] asks mapping
//! and remembers the answer. The table is one of the platform tables
//! ([`attrsync_db::PLATFORM_MIGRATIONS`]):
//! ```sql
//! CREATE TABLE workspace_projection (
//!     workspace_id              BIGINT PRIMARY KEY,
//!     fyle_org_id               TEXT NOT NULL,
//!     qbo_realm_id              TEXT,
//!     fyle_webhook_sync_enabled BOOLEAN NOT NULL,
//!     fyle_webhook_by_type      JSONB NOT NULL,
//!     qbo_webhook_sync_enabled  BOOLEAN NOT NULL,
//!     qbo_webhook_by_entity     JSONB NOT NULL,
//!     deleted                   BOOLEAN NOT NULL DEFAULT false,
//!     version                   BIGINT NOT NULL,
//!     snapshot                  BYTEA NOT NULL,
//!     updated_at                TIMESTAMPTZ NOT NULL DEFAULT now()
//! );
//! CREATE INDEX workspace_projection_org ON workspace_projection (fyle_org_id);
//! CREATE INDEX workspace_projection_realm ON workspace_projection (qbo_realm_id) WHERE qbo_realm_id IS NOT NULL;
//! ```

use std::{collections::HashMap, time::Duration};

use attrsync_db::{DbError, Failure, Pool};
use attrsync_proto::{
    Payload,
    v1::{
        GetWorkspaceRequest, ImportSettings, ListWorkspacesRequest, WorkspaceSnapshot,
        mapping_service_client::MappingServiceClient,
    },
};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use prost::Message;
use serde_json::Value;
use tonic::{service::interceptor::InterceptedService, transport::Channel};

use crate::{Handler, HandlerError, Incoming};

diesel::table! {
    workspace_projection (workspace_id) {
        workspace_id -> BigInt,
        fyle_org_id -> Text,
        qbo_realm_id -> Nullable<Text>,
        fyle_webhook_sync_enabled -> Bool,
        fyle_webhook_by_type -> Jsonb,
        qbo_webhook_sync_enabled -> Bool,
        qbo_webhook_by_entity -> Jsonb,
        deleted -> Bool,
        version -> BigInt,
        snapshot -> Bytea,
        updated_at -> Timestamptz,
    }
}

/// What a service knows about one workspace.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = workspace_projection)]
pub struct ProjectedWorkspace {
    pub workspace_id: i64,
    pub fyle_org_id: String,
    pub qbo_realm_id: Option<String>,
    pub fyle_webhook_sync_enabled: bool,
    pub fyle_webhook_by_type: Value,
    pub qbo_webhook_sync_enabled: bool,
    pub qbo_webhook_by_entity: Value,
    pub deleted: bool,
    pub version: i64,
    pub snapshot: Vec<u8>,
}

impl ProjectedWorkspace {
    /// The projection row for a snapshot; `None` for a snapshot without a workspace.
    pub fn from_snapshot(snapshot: &WorkspaceSnapshot) -> Option<Self> {
        let workspace = snapshot.workspace.as_ref()?;
        let flags = snapshot
            .settings
            .as_ref()
            .and_then(|s| s.webhook_flags.clone())
            .unwrap_or_default();
        let to_json = |m: &HashMap<String, bool>| {
            Value::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), Value::Bool(*v)))
                    .collect(),
            )
        };
        Some(Self {
            workspace_id: workspace.id,
            fyle_org_id: workspace.fyle_org_id.clone(),
            qbo_realm_id: workspace.qbo_realm_id.clone(),
            fyle_webhook_sync_enabled: flags.fyle_webhook_sync_enabled,
            fyle_webhook_by_type: to_json(&flags.fyle_by_attribute_type),
            qbo_webhook_sync_enabled: flags.qbo_webhook_sync_enabled,
            qbo_webhook_by_entity: to_json(&flags.qbo_by_entity),
            deleted: snapshot.deleted,
            version: snapshot.version,
            snapshot: snapshot.encode_to_vec(),
        })
    }

    /// Whether Fyle webhooks of `attribute_type` are applied in real time for this workspace:
    /// the per-type override if there is one, else the global flag.
    pub fn fyle_webhooks_enabled_for(&self, attribute_type: &str) -> bool {
        self.fyle_webhook_by_type
            .get(attribute_type)
            .and_then(Value::as_bool)
            .unwrap_or(self.fyle_webhook_sync_enabled)
    }
}

/// The incumbent's `charts_of_accounts` when a workspace has chosen none.
pub const DEFAULT_CHARTS_OF_ACCOUNTS: [&str; 1] = ["Expense"];

impl ProjectedWorkspace {
    /// The whole snapshot mapping published (settings included); the default snapshot when the
    /// stored bytes do not decode, so readers fall back to the incumbent's defaults instead of
    /// failing every operation of the workspace.
    pub fn decoded_snapshot(&self) -> WorkspaceSnapshot {
        WorkspaceSnapshot::decode(self.snapshot.as_slice()).unwrap_or_default()
    }

    /// The workspace's import settings (all off when it has none).
    pub fn import_settings(&self) -> ImportSettings {
        self.decoded_snapshot()
            .settings
            .and_then(|s| s.import_settings)
            .unwrap_or_default()
    }
}

/// The AccountTypes imported as categories: the workspace's choice, else
/// [`DEFAULT_CHARTS_OF_ACCOUNTS`].
pub fn charts_of_accounts(import: &ImportSettings) -> Vec<String> {
    if import.charts_of_accounts.is_empty() {
        DEFAULT_CHARTS_OF_ACCOUNTS
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    } else {
        import.charts_of_accounts.clone()
    }
}

impl ProjectedWorkspace {
    /// Whether QBO webhooks for `entity` (QBO's spelling, any case) are applied in real time:
    /// the per-entity override if there is one, else the global flag.
    pub fn qbo_webhooks_enabled_for(&self, entity: &str) -> bool {
        self.qbo_webhook_by_entity
            .as_object()
            .and_then(|map| {
                map.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(entity))
                    .and_then(|(_, v)| v.as_bool())
            })
            .unwrap_or(self.qbo_webhook_sync_enabled)
    }
}

/// The live workspaces connected to QBO company `realm_id`.
pub async fn find_by_realm(
    conn: &mut AsyncPgConnection,
    realm_id: &str,
) -> QueryResult<Vec<ProjectedWorkspace>> {
    use workspace_projection::dsl as p;
    p::workspace_projection
        .filter(p::qbo_realm_id.eq(realm_id))
        .filter(p::deleted.eq(false))
        .order(p::workspace_id)
        .select(ProjectedWorkspace::as_select())
        .load(conn)
        .await
}

/// Stores `row` unless the projection already holds the same or a newer version.
/// Returns whether the row was written.
pub async fn apply(conn: &mut AsyncPgConnection, row: &ProjectedWorkspace) -> QueryResult<bool> {
    use diesel::sql_types::{Bool, Bytea, Int8, Jsonb, Nullable, Text};
    let written = diesel::sql_query(
        "INSERT INTO workspace_projection AS p (workspace_id, fyle_org_id, qbo_realm_id, \
             fyle_webhook_sync_enabled, fyle_webhook_by_type, qbo_webhook_sync_enabled, \
             qbo_webhook_by_entity, deleted, version, snapshot) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (workspace_id) DO UPDATE SET \
             fyle_org_id = excluded.fyle_org_id, qbo_realm_id = excluded.qbo_realm_id, \
             fyle_webhook_sync_enabled = excluded.fyle_webhook_sync_enabled, \
             fyle_webhook_by_type = excluded.fyle_webhook_by_type, \
             qbo_webhook_sync_enabled = excluded.qbo_webhook_sync_enabled, \
             qbo_webhook_by_entity = excluded.qbo_webhook_by_entity, deleted = excluded.deleted, \
             version = excluded.version, snapshot = excluded.snapshot, updated_at = now() \
         WHERE p.version < excluded.version",
    )
    .bind::<Int8, _>(row.workspace_id)
    .bind::<Text, _>(&row.fyle_org_id)
    .bind::<Nullable<Text>, _>(&row.qbo_realm_id)
    .bind::<Bool, _>(row.fyle_webhook_sync_enabled)
    .bind::<Jsonb, _>(&row.fyle_webhook_by_type)
    .bind::<Bool, _>(row.qbo_webhook_sync_enabled)
    .bind::<Jsonb, _>(&row.qbo_webhook_by_entity)
    .bind::<Bool, _>(row.deleted)
    .bind::<Int8, _>(row.version)
    .bind::<Bytea, _>(&row.snapshot)
    .execute(conn)
    .await?;
    Ok(written > 0)
}

/// The projected workspace with this id, if known and not deleted.
pub async fn find(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
) -> QueryResult<Option<ProjectedWorkspace>> {
    use workspace_projection::dsl as p;
    p::workspace_projection
        .find(workspace_id)
        .filter(p::deleted.eq(false))
        .select(ProjectedWorkspace::as_select())
        .first(conn)
        .await
        .optional()
}

/// Up to `limit` projected workspaces with ids above `after_id`, deleted ones included, in id
/// order (for tasks that walk every workspace).
pub async fn page(
    conn: &mut AsyncPgConnection,
    after_id: i64,
    limit: i64,
) -> QueryResult<Vec<ProjectedWorkspace>> {
    use workspace_projection::dsl as p;
    p::workspace_projection
        .filter(p::workspace_id.gt(after_id))
        .order(p::workspace_id)
        .limit(limit)
        .select(ProjectedWorkspace::as_select())
        .load(conn)
        .await
}

/// The projected workspace with this id, deleted or not.
pub async fn find_any(
    conn: &mut AsyncPgConnection,
    workspace_id: i64,
) -> QueryResult<Option<ProjectedWorkspace>> {
    use workspace_projection::dsl as p;
    p::workspace_projection
        .find(workspace_id)
        .select(ProjectedWorkspace::as_select())
        .first(conn)
        .await
        .optional()
}

/// The projected workspaces with these ids, deleted or not (ids not projected are absent).
pub async fn find_any_of(
    conn: &mut AsyncPgConnection,
    workspace_ids: &[i64],
) -> QueryResult<Vec<ProjectedWorkspace>> {
    use workspace_projection::dsl as p;
    p::workspace_projection
        .filter(p::workspace_id.eq_any(workspace_ids))
        .select(ProjectedWorkspace::as_select())
        .load(conn)
        .await
}

/// What a service knows of a workspace a message names.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// In the projection, or fetched from mapping (and then remembered). May be deleted.
    Found(ProjectedWorkspace),
    /// mapping does not know it.
    Unknown,
    /// Neither the projection nor mapping could answer now.
    Unavailable(String),
}

impl Lookup {
    /// The workspace, if it is known and not deleted.
    pub fn live(self) -> Option<ProjectedWorkspace> {
        match self {
            Lookup::Found(w) if !w.deleted => Some(w),
            _ => None,
        }
    }
}

type Interceptor = fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>;
/// A mapping client that carries the caller's trace context.
pub type MappingClient = MappingServiceClient<InterceptedService<Channel, Interceptor>>;

/// A mapping client for `endpoint` that connects lazily (so a service starts while mapping is
/// down) and gives up on a call after a few seconds.
pub fn mapping_client(
    endpoint: &str,
) -> Result<MappingClient, tonic::codegen::http::uri::InvalidUri> {
    let channel = Channel::from_shared(endpoint.to_owned())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    Ok(MappingServiceClient::with_interceptor(
        channel,
        attrsync_telemetry::grpc::inject_interceptor as Interceptor,
    ))
}

/// Workspace facts for a service: its projection first, then mapping, so a message racing a
/// brand-new workspace's snapshot is neither refused nor stuck. Cheap to clone.
#[derive(Clone)]
pub struct WorkspaceDirectory {
    pool: Pool,
    /// `None` in mapping itself, whose registry is the projection's source.
    mapping: Option<MappingClient>,
    /// Bound on each projection read or write, so a silent database cannot hang a caller.
    query_timeout: Duration,
}

impl std::fmt::Debug for WorkspaceDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkspaceDirectory")
            .field("asks_mapping", &self.mapping.is_some())
            .finish_non_exhaustive()
    }
}

impl WorkspaceDirectory {
    pub fn new(pool: Pool, mapping: Option<MappingClient>, query_timeout: Duration) -> Self {
        Self {
            pool,
            mapping,
            query_timeout,
        }
    }

    pub async fn lookup(&self, workspace_id: i64) -> Lookup {
        let found = async {
            let mut conn = self.pool.get().await.map_err(DbError::from)?;
            find_any(&mut conn, workspace_id)
                .await
                .map_err(DbError::from)
        };
        match attrsync_db::with_deadline(self.query_timeout, found).await {
            Ok(Some(row)) => return Lookup::Found(row),
            Ok(None) => {}
            Err(e) => return Lookup::Unavailable(format!("projection: {e}")),
        }
        self.ask_mapping(workspace_id).await
    }

    /// [`Self::lookup`] for several workspaces at once: one projection query for all of them,
    /// then mapping for each id the projection lacks. Every id asked for is in the answer.
    pub async fn lookup_many(&self, workspace_ids: &[i64]) -> HashMap<i64, Lookup> {
        let found = async {
            let mut conn = self.pool.get().await.map_err(DbError::from)?;
            find_any_of(&mut conn, workspace_ids)
                .await
                .map_err(DbError::from)
        };
        let mut answers: HashMap<i64, Lookup> =
            match attrsync_db::with_deadline(self.query_timeout, found).await {
                Ok(rows) => rows
                    .into_iter()
                    .map(|row| (row.workspace_id, Lookup::Found(row)))
                    .collect(),
                Err(e) => {
                    let reason = format!("projection: {e}");
                    return workspace_ids
                        .iter()
                        .map(|&id| (id, Lookup::Unavailable(reason.clone())))
                        .collect();
                }
            };
        for &id in workspace_ids {
            if let std::collections::hash_map::Entry::Vacant(missing) = answers.entry(id) {
                missing.insert(self.ask_mapping(id).await);
            }
        }
        answers
    }

    /// mapping's answer for a workspace the projection lacks (remembered when found).
    async fn ask_mapping(&self, workspace_id: i64) -> Lookup {
        let Some(mapping) = &self.mapping else {
            return Lookup::Unknown;
        };
        match mapping
            .clone()
            .get_workspace(GetWorkspaceRequest { workspace_id })
            .await
        {
            Ok(response) => {
                let Some(row) = ProjectedWorkspace::from_snapshot(response.get_ref()) else {
                    return Lookup::Unknown;
                };
                self.remember(&row).await;
                Lookup::Found(row)
            }
            Err(status) if status.code() == tonic::Code::NotFound => Lookup::Unknown,
            Err(status) => Lookup::Unavailable(format!("mapping: {}", status.code())),
        }
    }
}

impl WorkspaceDirectory {
    /// The live workspaces connected to QBO company `realm_id`: the projection, else mapping
    /// (remembered). Several workspaces may share a realm.
    pub async fn lookup_realm(&self, realm_id: &str) -> Result<Vec<ProjectedWorkspace>, String> {
        let found = async {
            let mut conn = self.pool.get().await.map_err(DbError::from)?;
            find_by_realm(&mut conn, realm_id)
                .await
                .map_err(DbError::from)
        };
        let found = attrsync_db::with_deadline(self.query_timeout, found)
            .await
            .map_err(|e| format!("projection: {e}"))?;
        if !found.is_empty() {
            return Ok(found);
        }
        let Some(mapping) = &self.mapping else {
            return Ok(Vec::new());
        };
        let request = ListWorkspacesRequest {
            qbo_realm_id: Some(realm_id.to_owned()),
            page_size: 1000,
            ..Default::default()
        };
        let response = mapping
            .clone()
            .list_workspaces(request)
            .await
            .map_err(|status| format!("mapping: {}", status.code()))?;
        let rows: Vec<ProjectedWorkspace> = response
            .get_ref()
            .workspaces
            .iter()
            .filter_map(ProjectedWorkspace::from_snapshot)
            .filter(|row| !row.deleted)
            .collect();
        for row in &rows {
            self.remember(row).await;
        }
        Ok(rows)
    }

    /// Stores a workspace fetched from mapping in the projection (best effort: the snapshot
    /// arrives through Kafka anyway).
    async fn remember(&self, row: &ProjectedWorkspace) {
        let remembered = async {
            let mut conn = self.pool.get().await.map_err(DbError::from)?;
            apply(&mut conn, row).await.map_err(DbError::from)
        };
        if let Err(e) = attrsync_db::with_deadline(self.query_timeout, remembered).await {
            tracing::warn!(error = %e, "could not remember a workspace fetched from mapping");
        }
    }
}

/// The consumer of `settings.workspaces.v1` that keeps the projection.
#[derive(Clone)]
pub struct ProjectionHandler {
    pool: Pool,
}

impl std::fmt::Debug for ProjectionHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionHandler").finish_non_exhaustive()
    }
}

impl ProjectionHandler {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

impl Handler for ProjectionHandler {
    async fn handle(&self, message: &Incoming<'_>) -> Result<(), HandlerError> {
        let Some(Payload::WorkspaceSnapshot(snapshot)) = &message.envelope.payload else {
            return Err(HandlerError::Poison(
                "expected a WorkspaceSnapshot payload".into(),
            ));
        };
        let row = ProjectedWorkspace::from_snapshot(snapshot)
            .ok_or_else(|| HandlerError::Poison("snapshot without a workspace".into()))?;
        let mut conn = self
            .pool
            .get()
            .await
            .map_err(|e| HandlerError::Unavailable(DbError::from(e).to_string()))?;
        apply(&mut conn, &row)
            .await
            .map_err(|e| match attrsync_db::classify(&e) {
                Failure::Retryable => HandlerError::Unavailable(e.to_string()),
                Failure::Permanent => HandlerError::Failed(e.to_string()),
            })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use attrsync_proto::v1::{WebhookFlags, Workspace, WorkspaceSettings};

    use super::*;

    #[test]
    fn per_type_flags_override_the_global_flag() {
        let snapshot = WorkspaceSnapshot {
            workspace: Some(Workspace {
                id: 7,
                fyle_org_id: "orX".into(),
                ..Default::default()
            }),
            settings: Some(WorkspaceSettings {
                mapping_settings: Vec::new(),
                import_settings: None,
                webhook_flags: Some(WebhookFlags {
                    fyle_webhook_sync_enabled: true,
                    fyle_by_attribute_type: HashMap::from([("PROJECT".to_owned(), false)]),
                    ..Default::default()
                }),
            }),
            version: 3,
            deleted: false,
        };
        let row = ProjectedWorkspace::from_snapshot(&snapshot).expect("row");
        assert_eq!((row.workspace_id, row.version), (7, 3));
        assert!(row.fyle_webhooks_enabled_for("CATEGORY"));
        assert!(!row.fyle_webhooks_enabled_for("PROJECT"));
    }
}
