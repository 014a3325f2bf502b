//! The `ImportToFyleService` gRPC API.
//!
//! `TriggerImport` with `wait` runs the import in the call (under the same lease as the
//! runner task) and returns its log — a Fyle validation message is in `error_log_json`
//! (`message`, `response`), which mapping needs for #64; if another run holds the field, the
//! request is recorded and the call waits for that run's log up to `runs.wait_timeout`.
//! Without `wait` the request is recorded and served by the runner task within a coalescing
//! window. A waited run runs in a task of its own, so a caller that gives up (a deadline)
//! never leaves a run half-way with its lease renewed; the answer says whether a failure was
//! `transient`. A `custom_field` (with `wait` only; its options from CUSTOMER, CLASS,
//! DEPARTMENT or VENDOR) imports a custom field as a mapping setting not saved yet says — mapping's
//! `UpdateImportSettings` asks it before saving one, so that a setting Fyle refuses is not
//! saved (#64). `ListImportLogs` reads `import_logs`; `GetImportSchedule` the schedule.
//! Statuses: an unknown source field `INVALID_ARGUMENT`, an unknown workspace `NOT_FOUND`, the
//! database or the workspace directory down `UNAVAILABLE`.

use attrsync_db::{DbError, Pool};
use attrsync_proto::{
    time,
    v1::{
        GetImportScheduleRequest, ImportLog, ImportSchedule, ImportStatus, ListImportLogsRequest,
        ListImportLogsResponse, TriggerImportRequest, TriggerImportResponse,
        import_to_fyle_service_server::ImportToFyleService,
    },
};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use tonic::{Request, Response, Status};

use crate::{
    modules::{CustomImport, SourceField},
    run::{LogRow, Outcome, RunError, RunRequest, Runner, load_log},
    schedule,
    schema::import_logs as logs,
    store,
};

#[derive(Clone, Debug)]
pub(crate) struct ImportApi {
    pub(crate) runner: Runner,
    /// The schedule's interval, reported by `GetImportSchedule`.
    pub(crate) schedule_interval: std::time::Duration,
}

fn unavailable(e: impl Into<DbError>) -> Status {
    let e = e.into();
    tracing::error!(error = %e, "database error");
    Status::unavailable("database unavailable; retry")
}

fn run_status(e: RunError) -> Status {
    match e {
        RunError::UnknownWorkspace(_) => Status::not_found(e.to_string()),
        // A directory failure may carry a database error's text: logged, never returned.
        RunError::Directory(cause) => {
            tracing::warn!(%cause, "request failed: the workspace directory is unavailable");
            Status::unavailable("mapping or the database is unavailable; retry")
        }
        RunError::LeaseLost | RunError::SettingsBehind { .. } => Status::unavailable(e.to_string()),
        RunError::Db(e) => unavailable(e),
    }
}

fn outcome(status: &str) -> ImportStatus {
    match status {
        "COMPLETE" => ImportStatus::Complete,
        "FAILED" => ImportStatus::Failed,
        "FATAL" => ImportStatus::Fatal,
        "SKIPPED" => ImportStatus::Skipped,
        _ => ImportStatus::Unspecified,
    }
}

pub(crate) fn to_proto(l: &LogRow) -> ImportLog {
    let u32_of = |v: i32| u32::try_from(v).unwrap_or(0);
    ImportLog {
        workspace_id: l.workspace_id,
        attribute_type: l.attribute_type.clone(),
        status: l.status.clone(),
        total_batches_count: u32_of(l.total_batches_count),
        processed_batches_count: u32_of(l.processed_batches_count),
        error_log_json: l.error_log.to_string(),
        last_successful_run_at: l.last_successful_run_at.map(time::to_proto),
        updated_at: Some(time::to_proto(l.updated_at)),
        last_outcome: l.last_outcome.as_deref().map(outcome).unwrap_or_default() as i32,
        values_posted: u32_of(l.values_posted),
        started_at: l.started_at.map(time::to_proto),
    }
}

impl ImportApi {
    async fn record(&self, request: &RunRequest) -> Result<(), Status> {
        let mut conn = self.runner.pool().get().await.map_err(unavailable)?;
        store::request(
            &mut conn,
            request.workspace_id,
            &request.field,
            store::Ask {
                full: request.full,
                force: request.force,
                reason: &request.reason,
                settings_version: request.settings_version,
            },
        )
        .await
        .map_err(unavailable)
    }

    async fn log(
        &self,
        workspace_id: i64,
        field: &SourceField,
    ) -> Result<Option<ImportLog>, Status> {
        Ok(load_log(self.runner.pool(), workspace_id, field.as_str())
            .await
            .map_err(unavailable)?
            .as_ref()
            .map(to_proto))
    }
}

#[tonic::async_trait]
impl ImportToFyleService for ImportApi {
    async fn trigger_import(
        &self,
        request: Request<TriggerImportRequest>,
    ) -> Result<Response<TriggerImportResponse>, Status> {
        let r = request.into_inner();
        let field = SourceField::parse(&r.source_field).ok_or_else(|| {
            Status::invalid_argument(format!("unknown source field {:?}", r.source_field))
        })?;
        let custom_field = match (&field, &r.custom_field) {
            (_, None) => None,
            (SourceField::Custom(name), Some(setting))
                if setting.source_field == *name
                    && matches!(
                        setting.destination_field.as_str(),
                        "CUSTOMER" | "CLASS" | "DEPARTMENT" | "VENDOR"
                    ) =>
            {
                Some(CustomImport {
                    source_field: name.clone(),
                    destination_field: setting.destination_field.clone(),
                    placeholder: setting.source_placeholder.clone(),
                })
            }
            _ => {
                return Err(Status::invalid_argument(
                    "custom_field must be the mapping setting of the custom source_field, from CUSTOMER, CLASS, DEPARTMENT or VENDOR",
                ));
            }
        };
        if custom_field.is_some() && !r.wait {
            return Err(Status::invalid_argument(
                "custom_field imports a setting not saved yet: it needs wait",
            ));
        }
        let run = RunRequest {
            workspace_id: r.workspace_id,
            field: field.clone(),
            full: r.full,
            force: r.force,
            reason: "manual".to_owned(),
            settings_version: 0,
            custom_field,
        };
        if !r.wait {
            self.record(&run).await?;
            return Ok(Response::new(TriggerImportResponse {
                log: self.log(r.workspace_id, &field).await?,
                skipped_reason: String::new(),
                queued: true,
                transient: false,
            }));
        }
        let deadline = tokio::time::Instant::now() + self.runner.config().wait_timeout;
        loop {
            // In a task of its own: a caller that gives up (a client deadline) drops this
            // handler, never a run half-way with its lease still renewed.
            let runner = self.runner.clone();
            let task_run = run.clone();
            let outcome = tokio::spawn(async move { runner.run(&task_run).await })
                .await
                .map_err(|_| Status::internal("the import run ended abnormally"))?;
            match outcome.map_err(run_status)? {
                Outcome::Ran { log, transient } => {
                    return Ok(Response::new(TriggerImportResponse {
                        log: Some(to_proto(&log)),
                        skipped_reason: String::new(),
                        queued: false,
                        transient,
                    }));
                }
                Outcome::Skipped { reason, log } => {
                    return Ok(Response::new(TriggerImportResponse {
                        log: log.as_ref().map(to_proto),
                        skipped_reason: reason,
                        queued: false,
                        transient: false,
                    }));
                }
                Outcome::Busy if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Outcome::Busy => {
                    self.record(&run).await?;
                    return Ok(Response::new(TriggerImportResponse {
                        log: self.log(r.workspace_id, &field).await?,
                        skipped_reason: String::new(),
                        queued: true,
                        transient: false,
                    }));
                }
            }
        }
    }

    async fn list_import_logs(
        &self,
        request: Request<ListImportLogsRequest>,
    ) -> Result<Response<ListImportLogsResponse>, Status> {
        let workspace_id = request.into_inner().workspace_id;
        let pool: &Pool = self.runner.pool();
        let mut conn = pool.get().await.map_err(unavailable)?;
        let rows: Vec<LogRow> = logs::table
            .filter(logs::workspace_id.eq(workspace_id))
            .order(logs::attribute_type)
            .select(LogRow::as_select())
            .load(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(Response::new(ListImportLogsResponse {
            logs: rows.iter().map(to_proto).collect(),
        }))
    }

    async fn get_import_schedule(
        &self,
        request: Request<GetImportScheduleRequest>,
    ) -> Result<Response<ImportSchedule>, Status> {
        let workspace_id = request.get_ref().workspace_id;
        let mut conn = self.runner.pool().get().await.map_err(unavailable)?;
        let row = schedule::load(&mut conn, workspace_id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| Status::not_found("the workspace has no import schedule"))?;
        let source_fields = match attrsync_kafka::workspaces::find(&mut conn, workspace_id)
            .await
            .map_err(unavailable)?
        {
            Some(workspace) => schedule::wanted(&workspace)
                .iter()
                .map(|f| f.as_str().to_owned())
                .collect(),
            None => Vec::new(),
        };
        Ok(Response::new(ImportSchedule {
            workspace_id,
            interval_seconds: self.schedule_interval.as_secs(),
            next_run_at: Some(time::to_proto(row.next_run_at)),
            last_run_at: row.last_run_at.map(time::to_proto),
            source_fields,
        }))
    }
}
