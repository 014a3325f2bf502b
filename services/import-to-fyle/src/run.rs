//! An import run: one workspace × source field, from import-to-fyle's QBO values to Fyle.
//!
//! 1. **Lease** `import:<workspace>:<field>` ([`attrsync_db::lease`], renewed while the run
//!    works): at most one run per workspace × field across every replica. A crashed run holds
//!    nothing once its lease expires (`runs.lease_ttl`) — the incumbent's IN_PROGRESS trap
//!    (#35) is gone: IN_PROGRESS in `import_logs` is what an operator sees, never a lock.
//! 2. **Settings first**: a request decided on a newer workspace snapshot than the projection
//!    holds (mapping's `ImportRequested.settings_version`) fails as retryable
//!    (`SettingsBehind`) until the snapshot arrives — a command never runs on the settings
//!    before the change that asked for it.
//! 3. **The 30-minute rule** (#35): a scheduled or manual run is skipped when the last success
//!    is more recent than `runs.min_interval`, unless forced or full. Runs asked for by QBO
//!    changes are not: they carry new values, and skipping them would put the real-time path
//!    back on a timer.
//! 4. **Which values**: the first run (no success yet) and full runs read active values only
//!    (#40); later runs every value changed since the last success's *start* minus
//!    `runs.incremental_overlap`, inactive ones included (#41) — the incumbent's watermark is
//!    the end of the run, which loses values changed while it ran.
//! 5. **Asked-for disables first** (disable_items, #59): the Fyle ids in `import_disables`
//!    that Fyle still has enabled are disabled in a post of their own, then forgotten — so a
//!    create Fyle refuses cannot hold them back, and a failed post keeps them for the next
//!    run. A field the workspace no longer imports still runs for them.
//! 6. **Fyle's values**: fyle-sync is asked for an incremental pull of the resource, then
//!    read; **payloads** from [`crate::modules`], posted in batches of 200 with
//!    `total_batches_count` / `processed_batches_count` kept as progress; the rename disables
//!    last; merchants as one request (#49).
//! 7. **Outcome** in one transaction that first checks the lease: the log COMPLETE with
//!    `last_successful_run_at` and `error_log = []` (#36, #51), or FAILED / FATAL with the
//!    incumbent's `error_log` shape (#52–53), and an `ImportCompleted` on `imports.events.v1`
//!    through the outbox. After a run that posted, fyle-sync is asked for an incremental pull
//!    of the resource, so the new Fyle values (and their ids) reach its table and mapping.
//!
//! Failure policy: a Fyle 400 (its validation message kept in `error_log.message` and
//! `response`), a refused token, or Fyle 5xx through every retry marks the run FAILED;
//! anything unexpected FATAL. Batches already posted stay posted (Fyle has them; the next run
//! finds them present and does not post them again). Transient failures are retried by the
//! request task with backoff ([`crate::requests`]); a run that lost its lease writes nothing
//! more.

use std::{collections::HashSet, time::Duration};

use attrsync_config::KafkaConfig;
use attrsync_db::{
    DbError, Pool,
    lease::{self, Lease},
    outbox,
};
use attrsync_kafka::{
    envelope,
    relay::RelayHandle,
    topics::{self, TopicPayload as _},
    workspaces::{Lookup, WorkspaceDirectory},
};
use attrsync_proto::v1::{ImportCompleted, ImportStatus};
use chrono::{DateTime, Utc};
use diesel::{
    IntoSql as _,
    prelude::*,
    sql_types::{Array, BigInt, Text},
};
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde_json::{Value, json};

use crate::{
    config::RunsConfig,
    consumers::REASON_DESTINATION_CHANGED,
    fyle::{FyleError, FyleGateway},
    modules::{
        self, BATCH_SIZE, Candidate, CustomImport, DestValue, Existing, ImportPlan, Renamed,
        SourceField, category, custom, merchant, project, tax_group,
    },
    schema::{import_destination_attributes as da, import_logs as logs},
    settings, store,
};

const PRODUCER: &str = "import-to-fyle";

/// The values an expense field's option list is built from.
#[derive(Debug, Clone, Copy)]
struct OptionSources<'a> {
    candidates: &'a [Candidate],
    in_use: &'a HashSet<String>,
}

/// One run asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    pub workspace_id: i64,
    pub field: SourceField,
    pub full: bool,
    pub force: bool,
    pub reason: String,
    /// The workspace snapshot version the request was decided on: the run waits (fails as
    /// retryable) until the projection has reached it.
    pub settings_version: i64,
    /// A custom field to import as given rather than as the settings say (a mapping setting
    /// not saved yet, #64).
    pub custom_field: Option<CustomImport>,
}

/// A row of `import_logs`.
#[derive(Debug, Clone, Queryable, Selectable, PartialEq)]
#[diesel(table_name = logs)]
pub struct LogRow {
    pub workspace_id: i64,
    pub attribute_type: String,
    pub status: String,
    pub error_log: Value,
    pub total_batches_count: i32,
    pub processed_batches_count: i32,
    pub values_posted: i32,
    pub last_outcome: Option<String>,
    pub last_successful_run_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// What became of a run.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// It ran; the log says how it ended (COMPLETE, FAILED, FATAL).
    Ran { log: LogRow, transient: bool },
    /// Not run (the 30-minute rule, a field the workspace does not import).
    Skipped { reason: String, log: Option<LogRow> },
    /// Another run of the same workspace × field holds the lease.
    Busy,
}

/// Why a run could not even start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("workspace {0} is unknown or deleted")]
    UnknownWorkspace(i64),
    #[error("workspaces unavailable: {0}")]
    Directory(String),
    #[error("workspace settings not yet projected: version {have}, the request needs {need}")]
    SettingsBehind { have: i64, need: i64 },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the run lost its lease")]
    LeaseLost,
}

impl From<diesel::result::Error> for RunError {
    fn from(e: diesel::result::Error) -> Self {
        RunError::Db(e.into())
    }
}

/// Why a started run failed.
#[derive(Debug)]
enum Failure {
    Fyle(FyleError),
    Run(RunError),
}

impl From<FyleError> for Failure {
    fn from(e: FyleError) -> Self {
        Failure::Fyle(e)
    }
}

impl<E: Into<RunError>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Run(e.into())
    }
}

/// The 30-minute rule (pure): skip when the last success is within `min_interval` of `now`,
/// unless forced, full, or asked for by a QBO change.
pub fn skip_for_recent_success(
    request: &RunRequest,
    last_success: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    min_interval: Duration,
) -> bool {
    if request.force || request.full || request.reason == REASON_DESTINATION_CHANGED {
        return false;
    }
    let window = chrono::Duration::from_std(min_interval).unwrap_or(chrono::Duration::MAX);
    last_success.is_some_and(|at| now - at < window)
}

/// The incumbent's `error_log` for a failed run and its status (#52–53, pure).
pub fn error_log(field: &SourceField, workspace_id: i64, e: &FyleError) -> (ImportStatus, Value) {
    let task = format!("Import {} to Fyle and Auto Create Mappings", field.as_str());
    let (status, message, response, alert) = match e {
        FyleError::Rejected {
            message, response, ..
        } => (
            ImportStatus::Failed,
            message.clone(),
            response.clone(),
            true,
        ),
        FyleError::Token(_) => (
            ImportStatus::Failed,
            "Invalid Token for fyle".to_owned(),
            json!(e.to_string()),
            false,
        ),
        FyleError::Server { .. } => (
            ImportStatus::Failed,
            "Internal server error while importing to Fyle".to_owned(),
            json!(e.to_string()),
            true,
        ),
        FyleError::Unavailable(_) => (
            ImportStatus::Failed,
            "Fyle or fyle-sync unavailable; the import is retried".to_owned(),
            json!(e.to_string()),
            false,
        ),
        FyleError::Protocol(_) => (
            ImportStatus::Fatal,
            "Something went wrong".to_owned(),
            json!(e.to_string()),
            false,
        ),
    };
    (
        status,
        json!({"task": task, "workspace_id": workspace_id, "message": message,
               "response": response, "alert": alert}),
    )
}

/// The `field` label of metrics: custom fields are many, and count as one.
fn metric_field(field: &SourceField) -> &'static str {
    match field {
        SourceField::Category => "CATEGORY",
        SourceField::TaxGroup => "TAX_GROUP",
        SourceField::Merchant => "MERCHANT",
        SourceField::Project => "PROJECT",
        SourceField::CostCenter => "COST_CENTER",
        SourceField::Custom(_) => "CUSTOM",
    }
}

fn status_text(s: ImportStatus) -> &'static str {
    match s {
        ImportStatus::Complete => "COMPLETE",
        ImportStatus::Fatal => "FATAL",
        ImportStatus::Skipped => "SKIPPED",
        _ => "FAILED",
    }
}

/// Runs imports. Cheap to clone.
#[derive(Clone)]
pub struct Runner {
    pool: Pool,
    fyle: FyleGateway,
    directory: WorkspaceDirectory,
    kafka: KafkaConfig,
    relay: RelayHandle,
    config: RunsConfig,
    holder: String,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("holder", &self.holder)
            .finish_non_exhaustive()
    }
}

/// Reads the log of a workspace × field.
pub async fn load_log(
    pool: &Pool,
    workspace_id: i64,
    field: &str,
) -> Result<Option<LogRow>, DbError> {
    let mut conn = pool.get().await?;
    Ok(logs::table
        .find((workspace_id, field))
        .select(LogRow::as_select())
        .first(&mut conn)
        .await
        .optional()?)
}

impl Runner {
    pub fn new(
        pool: Pool,
        fyle: FyleGateway,
        directory: WorkspaceDirectory,
        kafka: KafkaConfig,
        relay: RelayHandle,
        config: RunsConfig,
    ) -> Self {
        Self {
            pool,
            fyle,
            directory,
            kafka,
            relay,
            config,
            holder: format!("import-{}", ulid::Ulid::new()),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn config(&self) -> &RunsConfig {
        &self.config
    }

    /// One run under the lease; see the module docs.
    pub async fn run(&self, request: &RunRequest) -> Result<Outcome, RunError> {
        let name = format!("import:{}:{}", request.workspace_id, request.field.as_str());
        let Some(held) =
            lease::acquire(&self.pool, &name, &self.holder, self.config.lease_ttl).await?
        else {
            return Ok(Outcome::Busy);
        };
        let renewer = lease::keep_renewed(self.pool.clone(), held.clone(), self.config.lease_ttl);
        let outcome = self.run_held(request, &held).await;
        renewer.abort();
        if let Err(e) = lease::release(&self.pool, &held).await {
            tracing::warn!(lease = %held.name, error = %e, "import lease not released; it expires");
        }
        outcome
    }

    async fn run_held(&self, request: &RunRequest, held: &Lease) -> Result<Outcome, RunError> {
        let workspace = match self.directory.lookup(request.workspace_id).await {
            Lookup::Found(w) if !w.deleted => w,
            Lookup::Found(_) | Lookup::Unknown => {
                return Err(RunError::UnknownWorkspace(request.workspace_id));
            }
            Lookup::Unavailable(reason) => return Err(RunError::Directory(reason)),
        };
        if workspace.version < request.settings_version {
            return Err(RunError::SettingsBehind {
                have: workspace.version,
                need: request.settings_version,
            });
        }
        let mut plan = settings::plan(&workspace);
        if let Some(custom) = &request.custom_field {
            plan.custom_fields
                .retain(|c| c.source_field != custom.source_field);
            plan.custom_fields.push(custom.clone());
        }
        let field = &request.field;
        let log = load_log(&self.pool, request.workspace_id, field.as_str()).await?;
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let pending_disables =
            store::pending_disables(&mut conn, request.workspace_id, field).await?;
        drop(conn);
        // Pending disables run whatever is imported now (items were, until the change).
        if !modules::sources(&plan).contains(field) && pending_disables.is_empty() {
            return Ok(Outcome::Skipped {
                reason: format!("the workspace's settings do not import {}", field.as_str()),
                log,
            });
        }
        let last_success = log.as_ref().and_then(|l| l.last_successful_run_at);
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let now: DateTime<Utc> =
            diesel::select(diesel::dsl::now.into_sql::<diesel::sql_types::Timestamptz>())
                .get_result(&mut conn)
                .await?;
        drop(conn);
        if skip_for_recent_success(request, last_success, now, self.config.min_interval) {
            return Ok(Outcome::Skipped {
                reason: format!(
                    "the last success is less than {} old",
                    humantime_serde::re::humantime::format_duration(self.config.min_interval)
                ),
                log,
            });
        }
        let since = if request.full {
            None
        } else {
            last_success.map(|at| {
                at - chrono::Duration::from_std(self.config.incremental_overlap).unwrap_or_default()
            })
        };
        self.start_log(request.workspace_id, field, now, held)
            .await?;
        // Asked-for disables first, on their own: a create Fyle refuses cannot hold them back.
        let result = match self
            .disable_pending(
                request.workspace_id,
                &workspace.fyle_org_id,
                field,
                &pending_disables,
            )
            .await
        {
            Ok(disabled) => self
                .execute(
                    request.workspace_id,
                    &workspace.fyle_org_id,
                    field,
                    &plan,
                    since,
                    held,
                )
                .await
                .map(|posted| posted + disabled),
            Err(e) => Err(e),
        };
        let (status, error, posted, transient) = match result {
            Ok(posted) => (ImportStatus::Complete, json!([]), posted, false),
            Err(Failure::Fyle(e)) => {
                tracing::warn!(workspace_id = request.workspace_id, field = field.as_str(),
                    error = %e, "import failed");
                let transient = e.is_transient();
                let (status, log) = error_log(field, request.workspace_id, &e);
                (status, log, 0, transient)
            }
            Err(Failure::Run(e)) => return Err(e),
        };
        let log = self
            .finish(
                request.workspace_id,
                field,
                status,
                error,
                posted,
                now,
                held,
            )
            .await?;
        metrics::counter!("import_to_fyle_runs_total", "field" => metric_field(field),
            "status" => status_text(status))
        .increment(1);
        if status == ImportStatus::Complete && posted > 0 {
            let resource = match field {
                SourceField::Merchant | SourceField::Custom(_) => "EXPENSE_FIELD",
                other => other.as_str(),
            };
            if let Err(e) = self.fyle.resync(request.workspace_id, resource).await {
                tracing::warn!(workspace_id = request.workspace_id, error = %e,
                    "fyle-sync not asked to pull the imported values; its reconcile will");
            }
        }
        Ok(Outcome::Ran { log, transient })
    }

    async fn start_log(
        &self,
        workspace_id: i64,
        field: &SourceField,
        now: DateTime<Utc>,
        held: &Lease,
    ) -> Result<(), RunError> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        conn.transaction::<(), RunError, _>(async |conn| {
            if !lease::is_live(conn, held).await? {
                return Err(RunError::LeaseLost);
            }
            diesel::insert_into(logs::table)
                .values((
                    logs::workspace_id.eq(workspace_id),
                    logs::attribute_type.eq(field.as_str()),
                    logs::status.eq("IN_PROGRESS"),
                    logs::started_at.eq(now),
                ))
                .on_conflict((logs::workspace_id, logs::attribute_type))
                .do_update()
                .set((
                    logs::status.eq("IN_PROGRESS"),
                    logs::total_batches_count.eq(0),
                    logs::processed_batches_count.eq(0),
                    logs::values_posted.eq(0),
                    logs::started_at.eq(now),
                    logs::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?;
            Ok(())
        })
        .await
    }

    async fn progress(
        &self,
        workspace_id: i64,
        field: &SourceField,
        total: Option<usize>,
        processed: usize,
        posted: usize,
        held: &Lease,
    ) -> Result<(), RunError> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        conn.transaction::<(), RunError, _>(async |conn| {
            if !lease::is_live(conn, held).await? {
                return Err(RunError::LeaseLost);
            }
            let target = logs::table.find((workspace_id, field.as_str()));
            let n = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
            diesel::update(target)
                .set((
                    logs::processed_batches_count.eq(n(processed)),
                    logs::values_posted.eq(n(posted)),
                    logs::updated_at.eq(diesel::dsl::now),
                ))
                .execute(conn)
                .await?;
            if let Some(total) = total {
                diesel::update(target)
                    .set(logs::total_batches_count.eq(n(total)))
                    .execute(conn)
                    .await?;
            }
            Ok(())
        })
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        workspace_id: i64,
        field: &SourceField,
        status: ImportStatus,
        error: Value,
        posted: usize,
        started: DateTime<Utc>,
        held: &Lease,
    ) -> Result<LogRow, RunError> {
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        let topic = self.kafka.topic(topics::IMPORT_EVENTS.name());
        let log = conn
            .transaction::<LogRow, RunError, _>(async |conn| {
                if !lease::is_live(conn, held).await? {
                    return Err(RunError::LeaseLost);
                }
                let target = logs::table.find((workspace_id, field.as_str()));
                let complete = status == ImportStatus::Complete;
                diesel::update(target)
                    .set((
                        logs::status.eq(status_text(status)),
                        logs::last_outcome.eq(status_text(status)),
                        logs::error_log.eq(&error),
                        logs::updated_at.eq(diesel::dsl::now),
                    ))
                    .execute(conn)
                    .await?;
                if complete {
                    diesel::update(target)
                        .set(logs::last_successful_run_at.eq(started))
                        .execute(conn)
                        .await?;
                }
                let message = error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let payload = ImportCompleted {
                    source_field: field.as_str().to_owned(),
                    status: status as i32,
                    values_posted: u32::try_from(posted).unwrap_or(u32::MAX),
                    error: message,
                };
                let envelope = envelope::new(
                    workspace_id,
                    PRODUCER,
                    attrsync_proto::time::now(),
                    payload.into_payload(),
                );
                outbox::enqueue(conn, &[envelope::outbox_row(topic.clone(), &envelope)]).await?;
                Ok(target.select(LogRow::as_select()).first(conn).await?)
            })
            .await?;
        self.relay.wake();
        Ok(log)
    }

    /// Loads the values of the run: changed since `since` (all states), or active ones.
    async fn values(
        &self,
        workspace_id: i64,
        types: &[String],
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<DestValue>, DbError> {
        let mut conn = self.pool.get().await?;
        let mut query = da::table
            .filter(da::workspace_id.eq(workspace_id))
            .filter(da::attribute_type.eq_any(types))
            .into_boxed();
        query = match since {
            Some(at) => query.filter(da::changed_at.ge(at)),
            None => query.filter(da::active.eq(true)),
        };
        #[allow(clippy::type_complexity)]
        let rows: Vec<(
            String,
            String,
            String,
            String,
            Option<String>,
            bool,
            Value,
            Option<String>,
            Option<String>,
        )> = query
            .select((
                da::attribute_type,
                da::display_name,
                da::destination_id,
                da::value,
                da::code,
                da::active,
                da::detail,
                da::renamed_from,
                da::renamed_from_code,
            ))
            .load(&mut conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(
                |(t, d, id, value, code, active, detail, renamed, renamed_code)| DestValue {
                    attribute_type: t,
                    display_name: d,
                    id,
                    value,
                    code,
                    active,
                    detail,
                    renamed_from: renamed.map(|value| Renamed {
                        value,
                        code: renamed_code,
                    }),
                },
            )
            .collect())
    }

    /// Lower-cased names among `names` that a QBO value of `types` still has (#58).
    async fn names_in_use(
        &self,
        workspace_id: i64,
        types: &[String],
        names: &[String],
    ) -> Result<HashSet<String>, DbError> {
        if names.is_empty() {
            return Ok(HashSet::new());
        }
        #[derive(QueryableByName)]
        struct Name {
            #[diesel(sql_type = Text)]
            name: String,
        }
        let mut conn = self.pool.get().await?;
        let lowered: Vec<String> = names.iter().map(|n| n.to_lowercase()).collect();
        let rows: Vec<Name> = diesel::sql_query(
            "SELECT DISTINCT lower(value) AS name FROM import_destination_attributes \
             WHERE workspace_id = $1 AND attribute_type = ANY($2) AND lower(value) = ANY($3)",
        )
        .bind::<BigInt, _>(workspace_id)
        .bind::<Array<Text>, _>(types)
        .bind::<Array<Text>, _>(&lowered)
        .load(&mut conn)
        .await?;
        Ok(rows.into_iter().map(|r| r.name).collect())
    }

    /// Builds and posts; returns how many values were posted.
    async fn execute(
        &self,
        workspace_id: i64,
        org_id: &str,
        field: &SourceField,
        plan: &ImportPlan,
        since: Option<DateTime<Utc>>,
        held: &Lease,
    ) -> Result<usize, Failure> {
        let types = modules::destination_types(field, plan);
        let rows = self.values(workspace_id, &types, since).await?;
        let candidates = modules::candidates(field, plan, rows);
        let old_names: Vec<String> = candidates
            .iter()
            .filter_map(|c| c.row.renamed_from.as_ref().map(|r| r.value.clone()))
            .collect();
        let in_use = self.names_in_use(workspace_id, &types, &old_names).await?;
        if *field == SourceField::Merchant {
            return self
                .merchants(workspace_id, org_id, plan, &candidates, &in_use, held)
                .await;
        }
        if let SourceField::Custom(name) = field {
            let values = OptionSources {
                candidates: &candidates,
                in_use: &in_use,
            };
            return self
                .custom_field(workspace_id, org_id, plan, name, values, held)
                .await;
        }
        let Some(resource) = field.resource() else {
            return Ok(0);
        };
        if candidates.is_empty() {
            self.progress(workspace_id, field, Some(0), 0, 0, held)
                .await?;
            return Ok(0);
        }
        // Fyle's values as of now: fyle-sync pulls what changed since its watermark (a full
        // pass if it never pulled the resource) before it is read — the incumbent's sync
        // before posting; a value Fyle already has must never be created again.
        self.fyle.resync(workspace_id, field.as_str()).await?;
        let existing = Existing::new(self.fyle.existing(workspace_id, field.as_str()).await?);
        let disables = match field {
            SourceField::TaxGroup => Vec::new(),
            _ => modules::rename_disables(field, plan, &candidates, &in_use, &existing),
        };
        let disable_rows = match field {
            SourceField::Category => category::disables(&disables),
            SourceField::TaxGroup => Vec::new(),
            _ => project::disables(&disables),
        };
        let total = modules::batch_count(candidates.len()) + usize::from(!disable_rows.is_empty());
        self.progress(workspace_id, field, Some(total), 0, 0, held)
            .await?;
        let mut posted = 0;
        let mut processed = 0;
        let mut batches: Vec<Vec<Value>> = candidates
            .chunks(BATCH_SIZE)
            .map(|batch: &[Candidate]| match field {
                SourceField::Category => category::payload(batch, &existing),
                SourceField::TaxGroup => tax_group::payload(batch, &existing),
                _ => project::payload(field, batch, &existing),
            })
            .collect();
        if !disable_rows.is_empty() {
            batches.push(disable_rows);
        }
        for payload in batches {
            if !payload.is_empty() {
                self.fyle
                    .post_bulk(workspace_id, org_id, resource, &payload)
                    .await?;
                posted += payload.len();
            }
            processed += 1;
            self.progress(workspace_id, field, None, processed, posted, held)
                .await?;
        }
        Ok(posted)
    }

    /// Disables the Fyle values `ids` of `field` that Fyle has enabled (disable_items), then
    /// forgets them all (those already disabled or gone need nothing); returns how many were
    /// posted. A failure keeps them for the next run.
    async fn disable_pending(
        &self,
        workspace_id: i64,
        org_id: &str,
        field: &SourceField,
        ids: &[String],
    ) -> Result<usize, Failure> {
        let Some(resource) = field.resource().filter(|_| !ids.is_empty()) else {
            return Ok(0);
        };
        self.fyle.resync(workspace_id, field.as_str()).await?;
        let in_fyle = self.fyle.existing(workspace_id, field.as_str()).await?;
        let rows = category::disables_by_id(ids, &in_fyle);
        if !rows.is_empty() {
            self.fyle
                .post_bulk(workspace_id, org_id, resource, &rows)
                .await?;
        }
        let mut conn = self.pool.get().await.map_err(DbError::from)?;
        store::clear_disables(&mut conn, workspace_id, field, ids).await?;
        tracing::info!(
            workspace_id,
            field = field.as_str(),
            disabled = rows.len(),
            "values disabled as asked (disable_items)"
        );
        Ok(rows.len())
    }

    /// Creates or updates the custom SELECT field `name` with the QBO values as its options
    /// (#50; see [`custom`]); returns how many options were posted.
    async fn custom_field(
        &self,
        workspace_id: i64,
        org_id: &str,
        plan: &ImportPlan,
        name: &str,
        values: OptionSources<'_>,
        held: &Lease,
    ) -> Result<usize, Failure> {
        let field = SourceField::Custom(name.to_owned());
        self.progress(workspace_id, &field, Some(1), 0, 0, held)
            .await?;
        let label = custom::label(name);
        let existing = self.fyle.custom_field(workspace_id, org_id, &label).await?;
        let current = existing
            .as_ref()
            .map(modules::field_options)
            .unwrap_or_default();
        let placeholder = custom::placeholder(
            plan.custom(name).and_then(|c| c.placeholder.as_deref()),
            existing.as_ref(),
            &label,
        );
        let placeholder_changed = existing
            .as_ref()
            .is_some_and(|f| f.get("placeholder").and_then(Value::as_str) != Some(&placeholder));
        let options = merchant::options(plan, values.candidates, values.in_use, &current)
            .or_else(|| (placeholder_changed && !current.is_empty()).then(|| current.clone()));
        let posted = match options {
            Some(options) => {
                let payload = custom::payload(&label, &placeholder, existing.as_ref(), &options);
                self.fyle
                    .post_expense_field(workspace_id, org_id, &payload)
                    .await?;
                options.len()
            }
            None => 0,
        };
        self.progress(workspace_id, &field, None, 1, posted, held)
            .await?;
        Ok(posted)
    }

    async fn merchants(
        &self,
        workspace_id: i64,
        org_id: &str,
        plan: &ImportPlan,
        candidates: &[Candidate],
        in_use: &HashSet<String>,
        held: &Lease,
    ) -> Result<usize, Failure> {
        if candidates.is_empty() {
            self.progress(workspace_id, &SourceField::Merchant, Some(0), 0, 0, held)
                .await?;
            return Ok(0);
        }
        self.progress(workspace_id, &SourceField::Merchant, Some(1), 0, 0, held)
            .await?;
        let Some(field) = self.fyle.merchant_field(workspace_id, org_id).await? else {
            return Err(FyleError::Rejected {
                status: 404,
                message: "the org has no merchant expense field".into(),
                response: Value::Null,
            }
            .into());
        };
        let current = modules::field_options(&field);
        let posted = match merchant::options(plan, candidates, in_use, &current) {
            Some(options) => {
                self.fyle
                    .post_merchant_options(workspace_id, org_id, &field, &options)
                    .await?;
                options.len()
            }
            None => 0,
        };
        self.progress(workspace_id, &SourceField::Merchant, None, 1, posted, held)
            .await?;
        Ok(posted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(reason: &str, full: bool, force: bool) -> RunRequest {
        RunRequest {
            workspace_id: 1,
            field: SourceField::Category,
            full,
            force,
            reason: reason.into(),
            settings_version: 0,
            custom_field: None,
        }
    }

    #[test]
    fn the_thirty_minute_rule_binds_schedules_and_unforced_manual_runs_only() {
        let now = Utc::now();
        let min = Duration::from_secs(30 * 60);
        let recent = Some(now - chrono::Duration::minutes(10));
        let old = Some(now - chrono::Duration::minutes(31));
        assert!(skip_for_recent_success(
            &request("schedule", false, false),
            recent,
            now,
            min
        ));
        assert!(skip_for_recent_success(
            &request("manual", false, false),
            recent,
            now,
            min
        ));
        assert!(!skip_for_recent_success(
            &request("schedule", false, false),
            old,
            now,
            min
        ));
        assert!(!skip_for_recent_success(
            &request("schedule", false, false),
            None,
            now,
            min
        ));
        assert!(!skip_for_recent_success(
            &request("manual", false, true),
            recent,
            now,
            min
        ));
        assert!(!skip_for_recent_success(
            &request("settings_changed", true, false),
            recent,
            now,
            min
        ));
        assert!(!skip_for_recent_success(
            &request(REASON_DESTINATION_CHANGED, false, false),
            recent,
            now,
            min
        ));
    }

    #[test]
    fn failures_map_to_the_incumbents_statuses_and_error_log() {
        let (status, log) = error_log(
            &SourceField::Project,
            7,
            &FyleError::Rejected {
                status: 400,
                message: "Invalid / disabled department found".into(),
                response: json!({"error": "BulkError"}),
            },
        );
        assert_eq!(status, ImportStatus::Failed);
        assert_eq!(
            log["task"],
            "Import PROJECT to Fyle and Auto Create Mappings"
        );
        assert_eq!(log["message"], "Invalid / disabled department found");
        assert_eq!(log["response"]["error"], "BulkError");
        assert_eq!(log["alert"], true);
        let (status, log) = error_log(&SourceField::Category, 7, &FyleError::Token("x".into()));
        assert_eq!(status, ImportStatus::Failed);
        assert_eq!(log["message"], "Invalid Token for fyle");
        let (status, log) = error_log(
            &SourceField::Category,
            7,
            &FyleError::Server {
                status: 502,
                message: "bad gateway".into(),
            },
        );
        assert_eq!(status, ImportStatus::Failed);
        assert_eq!(
            log["message"],
            "Internal server error while importing to Fyle"
        );
        let (status, _) = error_log(&SourceField::Category, 7, &FyleError::Protocol("?".into()));
        assert_eq!(status, ImportStatus::Fatal);
    }
}
