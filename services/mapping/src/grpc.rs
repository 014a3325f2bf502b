//! The `MappingService` gRPC API.
//!
//! Errors map to gRPC codes in one place ([`status`]): a refused settings change is
//! `INVALID_ARGUMENT` with a message naming the field, and nothing is saved.
//!
//! **A new custom field is imported before it is saved** (#64): `UpdateImportSettings` first
//! asks import-to-fyle to import each custom mapping setting it adds or changes that imports
//! (`TriggerImport` with `wait`, forced and full, carrying the setting), outside any
//! transaction. A run Fyle refuses (or a field import-to-fyle refuses to import) makes the
//! call `INVALID_ARGUMENT` with the JSON `{"message": <the refusal>, "field_name": <the source
//! field>}`, and nothing is saved; import-to-fyle unreachable, a run failed for a passing
//! reason, or another run of the field holding it past the wait, is `UNAVAILABLE` and nothing
//! is saved either. The values Fyle accepted stay in Fyle (as in the
//! incumbent, whose pre-save import has posted them too). Mappings and
//! mapping errors are [`crate::operator`]; import settings are [`crate::store`] around the
//! rules of [`crate::import_settings`].

use attrsync_kafka::relay::RelayHandle;
use attrsync_proto::v1::{
    CreateWorkspaceRequest, DeleteMappingRequest, DeleteMappingResponse, GetWorkspaceRequest,
    ImportSettings, ListMappingErrorsRequest, ListMappingErrorsResponse,
    ListMappingSettingsRequest, ListMappingSettingsResponse, ListMappingsRequest,
    ListMappingsResponse, ListWorkspacesRequest, ListWorkspacesResponse, Mapping, MappingError,
    MappingSetting, ReportMappingErrorRequest, TriggerImportRequest, UpdateImportSettingsRequest,
    UpdateWebhookFlagsRequest, UpsertMappingRequest, WorkspaceSnapshot,
    import_to_fyle_service_client::ImportToFyleServiceClient,
    mapping_service_server::MappingService,
};
use tonic::{Request, Response, Status, transport::Channel};

use crate::{
    operator,
    store::{Store, StoreError},
};

#[derive(Debug, Clone)]
pub(crate) struct MappingApi {
    pub(crate) store: Store,
    pub(crate) relay: RelayHandle,
    pub(crate) import_to_fyle: ImportToFyleServiceClient<Channel>,
}

impl MappingApi {
    /// Imports a custom field as `setting` says, waiting; `Err` when it must not be saved.
    async fn import_first(&self, workspace_id: i64, setting: MappingSetting) -> Result<(), Status> {
        let source_field = setting.source_field.clone();
        let response = self
            .import_to_fyle
            .clone()
            .trigger_import(TriggerImportRequest {
                workspace_id,
                source_field: source_field.clone(),
                full: true,
                wait: true,
                force: true,
                custom_field: Some(setting),
            })
            .await
            .map_err(|e| match e.code() {
                // import-to-fyle's own refusals (a name or field it cannot import) are final.
                tonic::Code::InvalidArgument | tonic::Code::NotFound => Status::invalid_argument(
                    serde_json::json!({"message": e.message(), "field_name": source_field})
                        .to_string(),
                ),
                _ => {
                    tracing::warn!(workspace_id, %source_field, error = %e,
                        "custom field not imported: import-to-fyle did not answer");
                    Status::unavailable(
                        "import-to-fyle is unavailable, so the custom field could not be imported; nothing was saved, retry",
                    )
                }
            })?
            .into_inner();
        if response.transient {
            return Err(Status::unavailable(
                "the custom field's import failed for a passing reason (Fyle or fyle-sync); nothing was saved, retry",
            ));
        }
        if response.queued {
            return Err(Status::unavailable(
                "another import of this field is running; nothing was saved, retry",
            ));
        }
        match response.log {
            Some(log) if log.status == "FAILED" || log.status == "FATAL" => {
                let error: serde_json::Value =
                    serde_json::from_str(&log.error_log_json).unwrap_or_default();
                let message = error
                    .get("message")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("Fyle refused the custom field")
                    .to_owned();
                tracing::info!(workspace_id, %source_field, %message,
                    "custom mapping setting refused: Fyle refused its import");
                Err(Status::invalid_argument(
                    serde_json::json!({"message": message, "field_name": source_field}).to_string(),
                ))
            }
            _ => Ok(()),
        }
    }
}

fn status(error: StoreError) -> Status {
    match error {
        StoreError::NotFound(_) => Status::not_found(error.to_string()),
        StoreError::OrgTaken(_) => Status::already_exists(error.to_string()),
        StoreError::Invalid(_) => Status::invalid_argument(error.to_string()),
        StoreError::MappingNotFound(_) => Status::not_found(error.to_string()),
        StoreError::UnknownAttribute(_) => Status::failed_precondition(error.to_string()),
        StoreError::Db(e) => {
            tracing::error!(error = %e, "database error");
            Status::unavailable("database unavailable; retry")
        }
    }
}

#[tonic::async_trait]
impl MappingService for MappingApi {
    async fn create_workspace(
        &self,
        request: Request<CreateWorkspaceRequest>,
    ) -> Result<Response<WorkspaceSnapshot>, Status> {
        let snapshot = self
            .store
            .create_workspace(request.get_ref())
            .await
            .map_err(status)?;
        self.relay.wake();
        tracing::info!(
            workspace_id = snapshot.workspace.as_ref().map(|w| w.id),
            "workspace created"
        );
        Ok(Response::new(snapshot))
    }

    async fn get_workspace(
        &self,
        request: Request<GetWorkspaceRequest>,
    ) -> Result<Response<WorkspaceSnapshot>, Status> {
        self.store
            .get(request.get_ref().workspace_id)
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn list_workspaces(
        &self,
        request: Request<ListWorkspacesRequest>,
    ) -> Result<Response<ListWorkspacesResponse>, Status> {
        let (workspaces, next_after_id) =
            self.store.list(request.get_ref()).await.map_err(status)?;
        Ok(Response::new(ListWorkspacesResponse {
            workspaces,
            next_after_id,
        }))
    }

    async fn update_webhook_flags(
        &self,
        request: Request<UpdateWebhookFlagsRequest>,
    ) -> Result<Response<WorkspaceSnapshot>, Status> {
        let snapshot = self
            .store
            .update_webhook_flags(request.get_ref())
            .await
            .map_err(status)?;
        self.relay.wake();
        Ok(Response::new(snapshot))
    }

    async fn get_import_settings(
        &self,
        request: Request<GetWorkspaceRequest>,
    ) -> Result<Response<ImportSettings>, Status> {
        let snapshot = self
            .store
            .get(request.get_ref().workspace_id)
            .await
            .map_err(status)?;
        let settings = snapshot
            .settings
            .and_then(|s| s.import_settings)
            .unwrap_or_default();
        Ok(Response::new(settings))
    }

    async fn update_import_settings(
        &self,
        request: Request<UpdateImportSettingsRequest>,
    ) -> Result<Response<WorkspaceSnapshot>, Status> {
        let workspace_id = request.get_ref().workspace_id;
        for setting in self
            .store
            .custom_imports(request.get_ref())
            .await
            .map_err(status)?
        {
            self.import_first(workspace_id, setting).await?;
        }
        let snapshot = self
            .store
            .update_import_settings(request.get_ref())
            .await
            .map_err(status)?;
        self.relay.wake();
        Ok(Response::new(snapshot))
    }

    async fn list_mapping_settings(
        &self,
        request: Request<ListMappingSettingsRequest>,
    ) -> Result<Response<ListMappingSettingsResponse>, Status> {
        let mapping_settings = self
            .store
            .list_mapping_settings(request.get_ref().workspace_id)
            .await
            .map_err(status)?;
        Ok(Response::new(ListMappingSettingsResponse {
            mapping_settings,
        }))
    }

    async fn list_mappings(
        &self,
        request: Request<ListMappingsRequest>,
    ) -> Result<Response<ListMappingsResponse>, Status> {
        let (mappings, next_after_id) = operator::list(self.store.pool(), request.get_ref())
            .await
            .map_err(status)?;
        Ok(Response::new(ListMappingsResponse {
            mappings,
            next_after_id,
        }))
    }

    async fn upsert_mapping(
        &self,
        request: Request<UpsertMappingRequest>,
    ) -> Result<Response<Mapping>, Status> {
        let mapping = operator::upsert(self.store.pool(), request.get_ref())
            .await
            .map_err(status)?;
        tracing::info!(
            workspace_id = mapping.workspace_id,
            mapping_id = mapping.id,
            "mapping upserted by an operator"
        );
        Ok(Response::new(mapping))
    }

    async fn delete_mapping(
        &self,
        request: Request<DeleteMappingRequest>,
    ) -> Result<Response<DeleteMappingResponse>, Status> {
        let r = request.get_ref();
        operator::delete(self.store.pool(), r.workspace_id, r.mapping_id)
            .await
            .map_err(status)?;
        Ok(Response::new(DeleteMappingResponse {}))
    }

    async fn list_mapping_errors(
        &self,
        request: Request<ListMappingErrorsRequest>,
    ) -> Result<Response<ListMappingErrorsResponse>, Status> {
        let (errors, next_after_id) = operator::list_errors(self.store.pool(), request.get_ref())
            .await
            .map_err(status)?;
        Ok(Response::new(ListMappingErrorsResponse {
            errors,
            next_after_id,
        }))
    }

    async fn report_mapping_error(
        &self,
        request: Request<ReportMappingErrorRequest>,
    ) -> Result<Response<MappingError>, Status> {
        operator::report_error(self.store.pool(), request.get_ref())
            .await
            .map(Response::new)
            .map_err(status)
    }
}
